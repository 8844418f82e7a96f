# Set-up and the two main jobs. Each target installs what it needs into a
# virtual environment (VENV) on first use, then runs.
#   make demo   the digits demo: teacher, student, student + KD, 3 seeds
#   make vitkd-digits  ViTKD / NKD / both vs. baseline on digits, 3 seeds
#   make attndistill-digits  label-free AttnDistill on digits (k-NN), 3 seeds
#   make scalekd-digits  ScaleKD vs KD vs alone, CNN and Mixer students, 3 seeds
#   make scalekd-sweep-digits  ScaleKD's mimicking weights x 1 / 0.1 / 0, CNN
#   make scalekd-width-digits  ScaleKD vs KD vs alone, a 4x wider CNN student
#   make dearkd-digits   DearKD vs token KD vs alone, all and 25 % data, 3 seeds
#   make dearkd-p4-digits  the same with 4x4 patches (about 3x longer)
#   make dearkd-datafree-digits  data-free DearKD students, 3 seeds
#   make speed-cpu   cls_kd vs a hand-written PyTorch step, CPU, fp32, batch 8
#   make speed-gpu   the same on a GPU, bf16, batch 256, eager and compiled
#   make speed-cpu-<pair>, speed-gpu-<pair>  one pair of SPEED_PAIRS
#   make test   linter + test suite
#   make test-quick  linter + the suite without the tests marked slow
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.cls_kd-installed

.PHONY: env demo vitkd-digits attndistill-digits scalekd-digits \
	scalekd-sweep-digits scalekd-width-digits \
	dearkd-digits dearkd-p4-digits dearkd-datafree-digits speed-cpu \
	speed-gpu test test-quick lint clean

env: $(STAMP)

# torch/torchvision first and pinned; mmcv-lite only if no mmcv is importable
# (a full mmcv with CUDA ops is kept); then the rest and cls_kd itself.
$(STAMP): setup.py requirements/torch.txt requirements/runtime.txt \
		requirements/mminstall.txt requirements/tests.txt
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -r requirements/torch.txt
	$(PY) -c "import mmcv" 2>/dev/null || \
		$(PY) -m pip install -r requirements/mminstall.txt
	$(PY) -m pip install -r requirements/runtime.txt -r requirements/tests.txt
	$(PY) -m pip install --no-deps -e .
	touch $(STAMP)

demo: env
	$(PY) tools/run_digits_demo.py

vitkd-digits: env
	$(PY) tools/run_digits_demo.py --experiment vitkd

attndistill-digits: env
	$(PY) tools/run_digits_demo.py --experiment attndistill

scalekd-digits: env
	$(PY) tools/run_digits_demo.py --experiment scalekd

scalekd-sweep-digits: env
	$(PY) tools/run_digits_demo.py --experiment scalekd-sweep --jobs 1

scalekd-width-digits: env
	$(PY) tools/run_digits_demo.py --experiment scalekd-width --jobs 1

dearkd-digits: env
	$(PY) tools/run_digits_demo.py --experiment dearkd

dearkd-p4-digits: env
	$(PY) tools/run_digits_demo.py --experiment dearkd-p4

dearkd-datafree-digits: env
	$(PY) tools/run_digits_demo.py --experiment dearkd-datafree

# The README's speed table: benchmark.py --reference on each pair of
# SPEED_PAIRS (its config and options in SPEED_<pair>), JSON in
# work_dirs/speed/; `make speed-cpu-<pair>` / `speed-gpu-<pair>` runs one.
# ImageNet-size configs, then each new method's digits config. AttnDistill's
# recipe accumulates 4 steps, which the reference does not write out; its
# float16 loss scaling runs in float32 on the CPU (benchmark.py's note).
SPEED_kd := configs/kd/kd_resnet34_resnet18_8xb64_in1k.py
SPEED_vitkd-nkd := configs/vitkd/vitkd-nkd_deit3-small_deit-tiny_8xb128_in1k.py
SPEED_scalekd-resnet50 := \
	configs/scalekd/scalekd_swin-large_resnet50_8xb32-100e_in1k.py
SPEED_scalekd-vit-small := \
	configs/scalekd/scalekd_swin-large_vit-small-p16_8xb128-300e_in1k.py
SPEED_attndistill := \
	configs/attndistill/attndistill_mugs-vit-small-p16_vit-tiny-p16_8xb128-accu4-800e_in1k.py \
	--cfg-options optim_wrapper.accumulative_counts=1
SPEED_dearkd-stage1 := configs/dearkd/dearkd_regnety-160_deit-tiny_4xb256_in1k.py
SPEED_dearkd-stage2 := $(SPEED_dearkd-stage1) --epoch 250
SPEED_scalekd-resnet18-digits := \
	configs/scalekd/scalekd_vit-4x64-p8_resnet18-c4_1xb64_digits.py
SPEED_scalekd-mixer-digits := \
	configs/scalekd/scalekd_vit-4x64-p8_mixer-4x32-p8_1xb64_digits.py
SPEED_attndistill-digits := \
	configs/attndistill/attndistill_vit-4x64-p8_vit-4x32-p8_1xb64_digits.py
SPEED_dearkd-stage1-digits := \
	configs/dearkd/dearkd_resnet18-c16_vit-t4-p8_1xb64_digits.py
SPEED_dearkd-stage2-digits := $(SPEED_dearkd-stage1-digits) --epoch 32
SPEED_PAIRS := kd vitkd-nkd scalekd-resnet50 scalekd-vit-small attndistill \
	dearkd-stage1 dearkd-stage2 scalekd-resnet18-digits \
	scalekd-mixer-digits attndistill-digits dearkd-stage1-digits \
	dearkd-stage2-digits
BENCH := $(PY) tools/analysis/benchmark.py

# One pair after the other (timings of pairs run side by side mean nothing).
speed-cpu: env
	for pair in $(SPEED_PAIRS); do \
		$(MAKE) --no-print-directory speed-cpu-$$pair || exit 1; \
	done

speed-gpu: env
	for pair in $(SPEED_PAIRS); do \
		$(MAKE) --no-print-directory speed-gpu-$$pair || exit 1; \
	done

speed-cpu-%: env
	mkdir -p work_dirs/speed
	$(BENCH) $(SPEED_$*) --reference --device cpu --batch-size 8 \
		--iters 20 --warmup 3 --out work_dirs/speed/$*_cpu_fp32_b8.json

speed-gpu-%: env
	mkdir -p work_dirs/speed
	for mode in eager compile; do \
		$(BENCH) $(SPEED_$*) --reference --device cuda --amp \
			--batch-size 256 --iters 50 --warmup 20 \
			$$( [ $$mode = compile ] && echo --compile ) \
			--out work_dirs/speed/$*_cuda_bf16_b256_$$mode.json \
			|| exit 1; \
	done

lint: env
	$(VENV)/bin/ruff check .

test: lint
	$(PY) -m pytest

# Everyday work: no real-size model builds, several processes, compiles.
test-quick: lint
	$(PY) -m pytest -m "not slow"

clean:
	rm -rf $(VENV) work_dirs data/digits
