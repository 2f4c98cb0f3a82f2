# ADE20K in mmseg's standard layout (data/ade/ADEChallengeData2016), 512x512 crops, 2 images
# per GPU. Change the location with tools/train.py --cfg-options data_root=PATH.
_base_ = ['mmseg::_base_/datasets/ade20k.py']
train_dataloader = dict(batch_size=2, num_workers=2)
val_dataloader = dict(batch_size=1, num_workers=2)
test_dataloader = val_dataloader
