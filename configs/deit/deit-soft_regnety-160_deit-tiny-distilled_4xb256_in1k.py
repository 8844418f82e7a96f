# DeiT soft distillation through the distillation token: the hard-label
# config with (1 - lambda) CE(class token, label) +
# lambda T^2 KL(teacher || distillation token) at DeiT's code defaults
# lambda=0.5, T=1.
_base_ = ['./deit_regnety-160_deit-tiny-distilled_4xb256_in1k.py']

model = dict(
    losses=dict(loss_deit=dict(mode='soft', temperature=1.0)))
