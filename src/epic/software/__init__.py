"""Application drivers: how an application's options become the commands of its job steps."""
