# The README's two commands are `make sweep` and `make test`; both set up the machine first (idempotent).
VENV := .venv/bin
PYTEST_ARGS ?=

.PHONY: setup lock sweep test lint type

setup:
	@bash scripts/setup.sh

# Re-resolve pyproject.toml's ranges from the registry in a throw-away venv and rewrite constraints.txt (the lock
# `make setup` installs). Review `git diff constraints.txt`, run the tests, commit (docs/INSTALL.md).
lock:
	@bash scripts/lock.sh

# The main job runs a camera at 1 frame/s, queue of one frame (docs/SWEEP.md, "Workloads": why this rate).
sweep: setup
	$(VENV)/splitbed sweep --workload periodic:1/queue:1

# pytest exit code 5 means no test ran: that must fail, never pass silently. Unbuffered output, so that a log
# keeps every line even if the process dies; the last line says how pytest ended. Bytecode caching on even where
# the environment turns it off (PYTHONDONTWRITEBYTECODE): the suite starts hundreds of Python processes (nodes,
# captures, CLI runs) that would each compile the project's modules again.
test: setup
	@env -u PYTHONDONTWRITEBYTECODE PYTHONUNBUFFERED=1 $(VENV)/python -m pytest $(PYTEST_ARGS); rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "make test: pytest collected no tests (exit 5): failing" >&2; exit 1; fi; \
	if [ $$rc -gt 128 ]; then echo "make test: pytest was killed by signal $$((rc - 128))" >&2; \
	elif [ $$rc -ne 0 ]; then echo "make test: pytest exit status $$rc (1: tests failed, 2: interrupted, 3: internal error, 4: usage)" >&2; fi; \
	exit $$rc

lint: setup
	$(VENV)/ruff check netem splitbed tests conftest.py

type: setup
	$(VENV)/mypy
