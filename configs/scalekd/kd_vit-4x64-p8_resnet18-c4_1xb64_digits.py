# Logit KD alone on digits (the "KD only" row of the digits ScaleKD
# experiment): ScaleKD's logit term, 0.5 CE + 0.5 KD with T = 1.
_base_ = ['../_base_/distill/vit-4x64-p8_resnet18-c4_digits.py']

model = dict(
    student_loss_weight=0.5,
    losses=dict(
        loss_kd=dict(
            type='KDLoss', temperature=1.0, loss_weight=0.5, form='soft_ce',
            inputs=dict(logits_s='logits_s', logits_t='logits_t'))),
)
