# The paper's ADI comparison row: data-free DearKD-Ti trained on images
# synthesised by Adaptive DeepInversion (DeepInversion + the teacher-student
# competition term, against a pretrained ResNet-18) from the same
# RegNetY-16GF teacher. Synthesise first:
#   torchrun --nproc_per_node 8 tools/synthesize.py \
#       configs/dearkd/synthesis/adi_regnety-160_in1k.py \
#       --out data/adi_in1k --launcher pytorch
# then train on that folder; validation stays on the real ImageNet val split.
_base_ = ['./dearkd_regnety-160_deit-tiny_4xb256_datafree.py']

train_dataloader = dict(dataset=dict(data_root='data/adi_in1k'))
