# The label-free digits frame: a bare 4x32 ViT backbone (patch 8, no head)
# learns from the DeiT III 6x128 teacher without reading a label. The train
# split is read without labels; validation is a k-NN classifier (k = 20,
# T = 0.07) on the student's class token after its final norm, with the
# labelled train split (test pipeline) as its feature bank. Method configs
# add taps, connectors and losses; pass the teacher's checkpoint with
# --cfg-options model.teacher.checkpoint=<teacher .pth>.
_base_ = ['./deit3-6x128-p8_vit-4x32-p8_digits.py']

model = dict(
    type='LabelFreeDistiller',
    student=dict(
        _delete_=True,
        type='VisionTransformer',
        arch=dict(embed_dims=32, num_layers=4, num_heads=4,
                  feedforward_channels=64),
        img_size=32,
        patch_size=8,
        out_type='cls_token'),
)
train_dataloader = dict(dataset=dict(with_label=False))
knn_bank = dict(
    batch_size=128,
    num_workers=1,
    persistent_workers=True,
    dataset=dict(
        type='CustomDataset',
        data_root='data/digits',
        data_prefix='train',
        pipeline={{_base_.test_pipeline}}),
    sampler=dict(type='DefaultSampler', shuffle=False))
val_cfg = dict(type='KNNValLoop', bank_dataloader=knn_bank)
val_evaluator = [
    dict(type='KNNAccuracy', k=20, temperature=0.07, topk=(1, ))
]
test_cfg = dict(type='KNNTestLoop', bank_dataloader=knn_bank)
test_evaluator = val_evaluator
