# A user config: our digits KD recipe with a loss and a distiller of one's
# own. Run from the repository root:
#   PYTHONPATH=docs/examples python tools/train.py \
#       docs/examples/mse_logits_resnet18-c16_vit-t4-p8_1xb64_digits.py
_base_ = ['../../configs/kd/kd_resnet18-c16_vit-t4-p8_1xb64_digits.py']

custom_imports = dict(imports=['my_losses'], allow_failed_imports=False)

model = dict(
    type='LoggingDistiller',
    losses=dict(
        _delete_=True,
        loss_mse=dict(
            type='MSELogitsLoss',
            loss_weight=0.1,
            inputs=dict(logits_s='logits_s', logits_t='logits_t'))),
)
