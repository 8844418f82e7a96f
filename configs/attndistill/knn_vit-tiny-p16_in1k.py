# k-NN evaluation (DINO's protocol, as knn_vit-small-p16_in1k.py) of a plain
# ViT-Tiny/16 backbone: an AttnDistill student exported by
#   python tools/model_converters/extract_student.py <epoch_800.pth> \
#       checkpoints/attndistill_vit-tiny-p16.pth
#   bash tools/dist_test.sh configs/attndistill/knn_vit-tiny-p16_in1k.py \
#       checkpoints/attndistill_vit-tiny-p16.pth 8
_base_ = ['./knn_vit-small-p16_in1k.py']

model = dict(backbone=dict(arch='deit-tiny'))
