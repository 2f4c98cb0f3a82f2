# COCO 2017 instances in mmdet's standard layout (data/coco/{train2017,val2017,annotations}),
# 2 images per GPU. Change the location with tools/train.py --cfg-options data_root=PATH.
_base_ = ['mmdet::_base_/datasets/coco_instance.py']
train_dataloader = dict(batch_size=2, num_workers=2)
val_dataloader = dict(batch_size=1, num_workers=2)
test_dataloader = val_dataloader
