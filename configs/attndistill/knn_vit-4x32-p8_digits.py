# k-NN evaluation (k = 20, T = 0.07) of a plain ViT 4x32 backbone (patch 8,
# class token after the final norm): the student of the AttnDistill digits
# configs, evaluated as their k-NN validation evaluates it, from the
# checkpoint the exporter writes (keys under `backbone.`):
#   python tools/model_converters/extract_student.py <epoch_N.pth> student.pth
#   python tools/test.py configs/attndistill/knn_vit-4x32-p8_digits.py \
#       student.pth
_base_ = ['./knn_vit-4x64-p8_digits.py']

model = dict(
    backbone=dict(arch=dict(embed_dims=32, feedforward_channels=64),
                  out_type='cls_token'),
    head=None)
