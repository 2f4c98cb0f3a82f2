# Data ablation (docs/quickstart.md): the quickstart UperNet, same schedule, on 300 training
# scenes. Data: tools/data/make_shapes_dataset.py --out data/shapes_300 --num-train-scenes 300
_base_ = ['../upernet_vminet_ti_shapes.py']
data_root = 'data/shapes_300/seg'
train_dataloader = dict(dataset=dict(data_root=data_root))
val_dataloader = dict(dataset=dict(data_root=data_root))
test_dataloader = val_dataloader
