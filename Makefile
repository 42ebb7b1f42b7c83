# gmos: two commands for a newcomer.
#   make demo   set everything up, then run the main job on the embedded default
#   make test   set everything up, then ruff format --check, ruff check and pytest
# `make setup` is idempotent: a second run is a quick no-op (a stamp file tracks its inputs).

SHELL := /bin/bash
PYTHON ?= python3.11
VENV ?= .venv
V := $(abspath $(VENV))
PY := $(V)/bin/python
PIP := $(PY) -m pip
# A CUDA user overrides this, e.g. TORCH_SPEC="torch==2.13.0 --index-url ...".
TORCH_SPEC ?= torch==2.13.0
# ROS 2 kilted from PyPI wheels, only where no ROS distribution provides rclpy already.
ROS_WHEELS := ros-kilted-rclpy ros-kilted-rmw-fastrtps-cpp ros-kilted-std-msgs \
  ros-kilted-sensor-msgs ros-kilted-diagnostic-msgs ros-kilted-lifecycle-msgs \
  ros-kilted-geometry-msgs ros-kilted-visualization-msgs \
  ros-kilted-ament-cmake ros-kilted-ament-package ros-kilted-ament-cmake-include-directories \
  ros-kilted-ament-cmake-ros-core ros-kilted-rosidl-default-generators \
  ros-kilted-rosidl-core-generators colcon-common-extensions
SAM2_SPEC ?= sam2==1.1.0
# The real TensorRT Python bindings (no libraries, ~1.3 MB each) that the API check in `make test`
# imports over stand-in libraries: JetPack 6's 10.3, the last 10.x and 11.4 (setup.py's
# `tensorrt` extra pins this range).
TRT_BINDINGS_VERSIONS := 10.3.0 10.16.1.11 11.4.0.106
STAMP := $(V)/.gmos-setup-stamp
MSG_SRC := $(wildcard msg/msg/*.msg) msg/CMakeLists.txt msg/package.xml

# Tests, CI and the demo keep DDS on loopback (see the environment note).
export ROS_AUTOMATIC_DISCOVERY_RANGE ?= LOCALHOST
export ROS_DOMAIN_ID ?= 87
export FASTDDS_DEFAULT_PROFILES_FILE ?= $(abspath config/fastdds_loopback.xml)

.PHONY: setup test lint pytest demo eval-demo clean msgs train-gmos-s train-gmos train-pi3 train-objects train-flow-motion benchmark

setup: $(STAMP)

$(STAMP): Makefile setup.py $(MSG_SRC)
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q $(TORCH_SPEC)
	@if $(PY) -c "import rclpy" 2>/dev/null && ! test -f $(V)/.gmos-ros-wheels; then \
	  echo "rclpy already importable: using the installed ROS distribution"; \
	else \
	  $(PIP) install -q $(ROS_WHEELS) && touch $(V)/.gmos-ros-wheels; \
	fi
	# SAM2, CPU-only recipe: no build isolation and no deps, or pip replaces the CPU torch
	# with a 5 GB CUDA build (environment note).
	SAM2_BUILD_CUDA=0 $(PIP) install -q --no-build-isolation --no-deps $(SAM2_SPEC)
	# The sam2 wheel also ships SAM2's own top-level `training` package (its trainer, not part
	# of the library API), which would shadow this project's `training` package: remove it.
	$(PY) -c "import pathlib, sysconfig; sp = pathlib.Path(sysconfig.get_paths()['purelib']); \
	rec = next(sp.glob('sam2-*.dist-info/RECORD')).read_text(); \
	import shutil; (sp / 'training').is_dir() and 'training/__init__.py' in rec and shutil.rmtree(sp / 'training')"
	$(PIP) install -q hydra-core iopath tqdm pillow onnx onnxruntime
	$(PIP) install -q -e ".[dev,onnx]"
	@for v in $(TRT_BINDINGS_VERSIONS); do \
	  test -d $(V)/trt-bindings/$$v/tensorrt_bindings || \
	  $(PIP) install -q --no-deps --target $(V)/trt-bindings/$$v tensorrt-cu12-bindings==$$v \
	  || exit 1; \
	done
	$(MAKE) --no-print-directory msgs
	@touch $(STAMP)
	@echo "gmos: setup complete ($(V))"

# Build the gmos_msgs interface package straight into the venv (no sourcing needed after).
msgs:
	@mkdir -p build
	@if test -f $(V)/.gmos-ros-wheels; then \
	  PYINC=$$($(PY) -c 'import sysconfig;print(sysconfig.get_paths()["include"])'); \
	  NPINC=$$($(PY) -c 'import numpy;print(numpy.get_include())'); \
	  grep -rl '/opt/python/cp311-cp311/' "$(V)/share" --include='*.cmake' | xargs -r sed -i \
	    -e "s#/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include#$$NPINC#g" \
	    -e "s#/opt/python/cp311-cp311/include/python3.11#$$PYINC#g"; \
	fi
	PATH=$(V)/bin:$$PATH cmake -S msg -B build/gmos_msgs -DCMAKE_INSTALL_PREFIX=$(V) \
	  -DCMAKE_PREFIX_PATH=$(V) -DPython3_EXECUTABLE=$(PY) -DBUILD_TESTING=OFF > build/gmos_msgs.log 2>&1 \
	  || (cat build/gmos_msgs.log; exit 1)
	PATH=$(V)/bin:$$PATH cmake --build build/gmos_msgs -j2 >> build/gmos_msgs.log 2>&1 \
	  || (tail -50 build/gmos_msgs.log; exit 1)
	cmake --install build/gmos_msgs >> build/gmos_msgs.log 2>&1 || (tail -20 build/gmos_msgs.log; exit 1)
	$(PY) -c "from gmos_msgs.msg import MovingObjectArray; print('gmos_msgs OK')"

lint: setup
	$(V)/bin/ruff format --check .
	$(V)/bin/ruff check .

pytest: setup
	$(V)/bin/pytest -q $(PYTEST_ARGS)

test: setup
	$(V)/bin/ruff format --check .
	$(V)/bin/ruff check .
	$(V)/bin/pytest -q $(PYTEST_ARGS)

# The node demo: synthetic bag -> gmos_node over loopback DDS -> recorded outputs -> MOS-I.
# The node's defaults: the shipped micro Gmos, with the flow motion net deciding which objects
# move (motion_decision auto; its own motion head is at chance: --motion-decision head).
demo: setup
	$(PY) -m gmos_ros.demo --out out/demo

# The evaluation demo without ROS: the non-learned baseline scored on synthetic scenes.
eval-demo: setup
	$(PY) -m training.demo --out out/eval_demo

# The micro recipe, one command per model (CPU; docs/training.md). Every stage resumes where it
# stopped (out/train/<run>/last.pt, or on a fresh clone the committed float16 states in
# training/checkpoints/micro/) and is a no-op once it reached its total max_steps, so rerunning
# a target accumulates training: stage 1 (π³ motion pretraining, shared), stage 2
# (max_minutes per run), then the operating point picked on validation clips. Stage 2 starts
# from a committed stage-1b snapshot (training/checkpoints/micro/: Gmos from
# objects_stage1b_step14000.*, Gmos-S from the SAM2 part of step 6000,
# objects_stage1b_step6000_sam2.*); `make train-objects` continues stage 1b (object
# pretraining of SAM2 + the proposer) towards its gate when given a larger max_steps, after
# which its new state can replace a snapshot and stage 2 restarts. The
# calibrated bundle lands next to the run; copy it to gmos_core/assets/ to make it the
# shipped default.
train-pi3: setup
	$(PY) -m training.pretrain_pi3 --config-name pi3_micro

train-objects: setup
	$(PY) -m training.pretrain_objects --config-name objects_micro

train-gmos-s: train-pi3
	$(PY) -m training.train --config-name gmos_s_micro
	$(PY) -m training.calibrate --bundle out/train/gmos_s_micro/micro_gmos_s.safetensors \
	  --out out/train/gmos_s_micro/calibrated/micro_gmos_s.safetensors --check-seqs 60

train-gmos: train-pi3
	$(PY) -m training.train --config-name gmos_micro
	$(PY) -m training.calibrate --bundle out/train/gmos_micro/micro_gmos.safetensors \
	  --out out/train/gmos_micro/calibrated/micro_gmos.safetensors --baselines --fp-budget 0 \
	  --check-seqs 60

# The flow motion net of the flow_motion decision (RGB only; ~11 min of cached planes, then
# ~25 min of training on one core), then its operating point on the shipped micro Gmos.
train-flow-motion: setup
	$(PY) -m training.train_flow_motion --config-name flow_motion_micro
	$(PY) -m training.calibrate --bundle gmos_core/assets/micro_gmos.safetensors \
	  --out out/train/flow_motion_micro/calibrated/micro_gmos.safetensors --decision flow_motion \
	  --baselines --fp-budget 0 --fp-margin 0.15 --check-seqs 60

# The held-out synthetic benchmark of the shipped bundles against the baselines, with the
# Gmos rows of the flow_motion and depth_warp decisions too (~6 min).
benchmark: setup
	$(PY) -m training.benchmark_synthetic --out out/benchmark \
	  --gmos-s-bundle gmos_core/assets/micro_gmos_s.safetensors \
	  --gmos-bundle gmos_core/assets/micro_gmos.safetensors --flow-motion --depth-warp

clean:
	rm -rf build out .pytest_cache .ruff_cache
