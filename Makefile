PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: test demo demo-world install clean web-deps

install: $(STAMP)

# (Re)create the virtual environment when the project's requirements change.
$(STAMP): pyproject.toml constraints.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -c constraints.txt -e '.[test]'
	touch $(STAMP)

test: $(STAMP) web-deps
	$(PY) -m pytest -q tests

# The browser tests' tools: node, web/'s npm packages (npm ci) and Debian's chromium; what cannot be
# installed here makes those tests skip with the reason (CI requires them: STYLECLIP_WEB_TESTS=require).
web-deps:
	@scripts/web_deps.sh

demo: $(STAMP)
	$(PY) cli.py demo

# Rebuild every shipped demo model from scratch (seeded; each step resumes when rerun). ~3 h on 2 cores.
DEMO := artifacts/demo
# Mappers: 4 shifted CLIP views, coarse rows unedited, the latent penalty l2 300, the identity term with the demo
# identity network, the keep term outside the edited attribute; per prompt its rows and keep weight (README).
MAPPER := $(PY) cli.py train-mapper --clip-views 4 --disable coarse --steps 600 --identity $(DEMO)/identity.json \
	--l2-weight 300
demo-world: $(STAMP)
	$(PY) cli.py train-classifier
	$(PY) cli.py train-identity
	$(PY) cli.py train-clip
	$(PY) cli.py train-generator
	$(PY) cli.py refine-generator
	$(PY) cli.py train-encoder
	$(PY) cli.py train-identity  # trained already: measures again, now on the encoder's reconstructions too
	-$(PY) cli.py evaluate-demo  # the report; exits 1 while a bar is missed, which must not stop the rebuild
	$(PY) cli.py sample-demo
	$(PY) cli.py s-stats --generator $(DEMO)/generator.json --out $(DEMO)/s_stats.npz
	$(PY) cli.py fs3 --generator $(DEMO)/generator.json --clip $(DEMO)/clip.json --s-stats $(DEMO)/s_stats.npz \
		--images 40 --workdir build/fs3-demo --ray --out $(DEMO)/fs3.npy  # every core; the single-process table
	$(MAPPER) "a face with purple hair" --disable medium --keep hair_color --keep-weight 200  # docs/edit_tuning.md
	$(MAPPER) "a smiling face" --disable fine --keep expression --keep-weight 200
	$(MAPPER) "a face with glasses" --keep glasses --keep-weight 15
	rm -rf artifacts/bundles/demo  # built from the models above, not an older set
	$(PY) cli.py demo --out docs/demo.png
	$(PY) cli.py evaluate --methods C,B --identity $(DEMO)/identity.json --bundle artifacts/bundles/demo
	$(PY) cli.py evaluate --methods C,B --inverted --identity $(DEMO)/identity.json --bundle artifacts/bundles/demo
	$(PY) cli.py evaluate --methods A --edits "purple hair,smiling,glasses" -n 200 --seed 0 --steps 100 --l2 0.3 --clip-views 4 \
		--identity $(DEMO)/identity.json --id-weight 0.1 --keep-weight 30 --out-dir docs/method_a

clean:
	rm -rf $(VENV) build *.egg-info .pytest_cache
