"""Import a script under tools/ as a module, so tests call its functions directly."""
import importlib.util
import os.path as osp

ROOT = osp.dirname(osp.dirname(osp.abspath(__file__)))


def load_tool(relpath: str):
    """The module of ``tools/<relpath>`` (e.g. ``'analysis/benchmark.py'``), freshly executed."""
    path = osp.join(ROOT, 'tools', relpath)
    name = 'tool_' + relpath[:-len('.py')].replace('/', '_')
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module
