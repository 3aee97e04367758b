"""Rules for the environment variables a licence may set in a job."""

import re

VARIABLE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")
MAX_VALUE_LENGTH = 300
MAX_VARIABLES = 64
MASK = "********"

# Variables the job's runtime, loader, shells or interpreters act on: a licence setting
# them could change what a job runs rather than which licence it uses.
RESERVED_NAMES = frozenset(
    {
        "BASH_ENV",
        "CDPATH",
        "ENV",
        "GCONV_PATH",
        "HOME",
        "IFS",
        "LANG",
        "LC_ALL",
        "LOGNAME",
        "NODE_OPTIONS",
        "OMP_NUM_THREADS",
        "PATH",
        "PERL5LIB",
        "PERL5OPT",
        "PWD",
        "PYTHONHOME",
        "PYTHONPATH",
        "PYTHONSTARTUP",
        "RUBYOPT",
        "SHELL",
        "TMPDIR",
        "USER",
    }
)
# Whole families: the dynamic loader, MPI and PMI, Slurm, exported shell functions, the
# data store's credentials and the product's own variables.
RESERVED_PREFIXES = ("AWS_", "BASH_FUNC_", "EPIC_", "LD_", "OMPI_", "PMI_", "PMIX_", "SLURM_")


def name_problem(name: str) -> str | None:
    """Say why `name` may not be set by a licence, or return None when it may."""
    if not VARIABLE_NAME.fullmatch(name):
        return "Must be a letter or underscore, then letters, digits or underscores (128 at most)."

    # Compared in capitals, so near-misses such as `Path` are refused too.
    upper = name.upper()
    if upper in RESERVED_NAMES or upper.startswith(RESERVED_PREFIXES):
        return f"{name} is reserved and cannot be set by a licence."
    return None
