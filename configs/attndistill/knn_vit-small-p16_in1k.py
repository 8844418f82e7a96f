# k-NN evaluation (DINO's protocol: k = 20, T = 0.07, bank = the labelled
# ImageNet train split, resize 256 -> center crop 224) of a plain ViT-Small/16
# backbone (class token after the final norm): an AttnDistill student,
# evaluated as its k-NN validation evaluates it, from the checkpoint the
# exporter writes (keys under `backbone.`):
#   python tools/model_converters/extract_student.py <epoch_800.pth> \
#       checkpoints/attndistill_vit-small-p16.pth
#   bash tools/dist_test.sh configs/attndistill/knn_vit-small-p16_in1k.py \
#       checkpoints/attndistill_vit-small-p16.pth 8
# The evaluation settings are the distillation frame's (inherited).
_base_ = ['../_base_/distill/attndistill_in1k.py']

model = dict(
    _delete_=True,
    type='ImageClassifier',
    backbone=dict(
        type='DINOVisionTransformer',
        arch='deit-small',
        img_size=224,
        patch_size=16,
        out_type='cls_token'),
    neck=None,
    head=None)
