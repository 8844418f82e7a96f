# k-NN evaluation (k = 20, T = 0.07) of the digits ViT 4x64 teacher's class
# token after its final norm, as the label-free students are evaluated:
# python tools/test.py <this config> <teacher .pth>.
_base_ = ['../digits/vit-t4-p8_1xb64_digits.py']

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
test_cfg = dict(type='KNNTestLoop', bank_dataloader=knn_bank)
test_evaluator = [
    dict(type='KNNAccuracy', k=20, temperature=0.07, topk=(1, ))
]
