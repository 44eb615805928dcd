# The two commands a newcomer needs: `make demo` and `make test`. Everything else is here for them.
PYTHON ?= python3.11
VENV := .venv
RENDER_VENV := .venv-render
PORTAL := automat_pipeline/portal
# Debian/Ubuntu packages that bpy and OpenCascade load at run time (without libegl1 Blender aborts);
# nodejs (npm installs the portal's browser libraries) and chromium (the portal's browser tests).
SYSTEM_PACKAGES := libegl1 libgl1 libglu1-mesa libgomp1 libsm6 libxi6 libxkbcommon0 libxrender1 libxxf86vm1 libxfixes3 \
	nodejs chromium

# PyPI downloads break off mid-file at times (CI lost the 374 MB bpy wheel at the same byte six times
# in a row): pip resumes a broken download, and an install that still fails is tried again afresh.
export PIP_RESUME_RETRIES := 20
pip_install = for attempt in 1 2 3; do $(1) && exit 0; echo "pip failed (attempt $$attempt of 3)" >&2; sleep 30; done; exit 1

.PHONY: setup portal system-packages docker-engine docker-images demo ui lint test test-fast test-faults bench clean

setup: $(VENV)/.installed $(RENDER_VENV)/.installed portal

# The portal's browser libraries (package-lock.json), served as they are: no bundler, no build.
portal: $(PORTAL)/node_modules/.installed

$(PORTAL)/node_modules/.installed: $(PORTAL)/package.json $(PORTAL)/package-lock.json
	cd $(PORTAL) && npm ci --omit=peer --no-audit --no-fund --loglevel=error
	touch $@

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(call pip_install,$(VENV)/bin/pip install --quiet -e '.[dev]')
	touch $@

$(RENDER_VENV)/.installed: blender/requirements.txt
	$(PYTHON) -m venv $(RENDER_VENV)
	$(RENDER_VENV)/bin/pip install --quiet --upgrade pip
	$(call pip_install,$(RENDER_VENV)/bin/pip install --quiet -r blender/requirements.txt)
	touch $@

# Root only; the README lists the same packages for a manual install. Debian's npm only where no npm
# is installed (a Node.js from elsewhere brings its own, and Debian's npm package conflicts with it).
system-packages:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(SYSTEM_PACKAGES) \
		$$(command -v npm >/dev/null || echo npm)

# Root only: a Docker engine (Debian's docker.io) and docker-compose for the deployment tests, and
# the base image (debootstrap: no image registry is reachable here).
docker-engine:
	apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker.io docker-compose debootstrap
	docker/engine.sh

# The images, automat/<target>:$(IMAGE_TAG). BLENDER_SOURCE=pypi puts the bpy wheel in the render
# image instead of the official Blender build (which needs download.blender.org).
IMAGE_TAG ?= dev
docker-images: setup
	docker/build.sh $(IMAGE_TAG)

demo: setup
	$(VENV)/bin/automat demo

ui: setup
	$(VENV)/bin/automat ui

# ruff: pycodestyle, pyflakes, import order, bugbear, pyupgrade, and the formatter (pyproject.toml).
lint: setup
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

test: lint
	$(VENV)/bin/pytest

test-fast: lint
	$(VENV)/bin/pytest -m "not slow"

# The fault-injection suite alone (tests/test_faults.py; also part of `make test`). Root mounts the
# small filesystem of the full-disk case; elsewhere that case is skipped (and fails under ci).
test-faults: lint
	$(VENV)/bin/pytest -m faults

bench: setup
	$(VENV)/bin/python bench/run.py

clean:
	rm -rf $(VENV) $(RENDER_VENV) .automat $(PORTAL)/node_modules
