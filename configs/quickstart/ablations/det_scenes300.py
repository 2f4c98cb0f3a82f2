# Data ablation (docs/quickstart.md): the quickstart Mask R-CNN as it was on 300 training scenes
# for 12 epochs (the images seen of the default 3 epochs of 1200). The neck ablations inherit
# it. Data: tools/data/make_shapes_dataset.py --out data/shapes_300 --num-train-scenes 300
_base_ = ['../mask_rcnn_vminet_ti_shapes.py']
data_root = 'data/shapes_300/det'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=f'{data_root}/annotations/instances_val.json')
test_evaluator = val_evaluator
max_epochs = 12
train_cfg = dict(max_epochs=max_epochs, val_interval=max_epochs)
param_scheduler = [
    dict(type='LinearLR', start_factor=0.01, by_epoch=False, begin=0, end=50),
    dict(type='MultiStepLR', begin=0, end=max_epochs, by_epoch=True,
         milestones=[9, 11], gamma=0.1),
]
default_hooks = dict(checkpoint=dict(interval=4))
