"""The one place that knows which OpenMMLab libraries exist.

``register_model`` puts a class into the ``MODELS`` registry of every installed library among
mmpretrain, mmdet and mmsegmentation, so that configs of each library can name it and a user who
has only one of them installed still works.
"""
import importlib
import importlib.util

#: library scope -> module that holds its ``MODELS`` registry
MM_LIBRARIES = {
    'mmpretrain': 'mmpretrain.registry',
    'mmdet': 'mmdet.registry',
    'mmseg': 'mmseg.registry',
}


def installed_model_registries():
    """``{scope: MODELS}`` for each installed library (looked up on each call)."""
    registries = {}
    for scope, module in MM_LIBRARIES.items():
        if importlib.util.find_spec(scope) is None:
            continue
        registries[scope] = importlib.import_module(module).MODELS
    return registries


def register_model(cls):
    """Class decorator: register ``cls`` under its own name in every installed ``MODELS``."""
    for registry in installed_model_registries().values():
        registry.register_module(module=cls, force=True)
    return cls


def build_model(cfg, scope: str):
    """Build ``cfg`` with library ``scope``'s ``MODELS``, that scope being the default while
    it builds (nested types such as heads and losses are looked up there first)."""
    from mmengine.registry import DefaultScope
    if scope not in MM_LIBRARIES:
        raise ValueError(f'unknown scope {scope!r}; valid: {", ".join(MM_LIBRARIES)}')
    registry = importlib.import_module(MM_LIBRARIES[scope]).MODELS
    with DefaultScope.overwrite_default_scope(scope):
        return registry.build(cfg)
