import os.path as osp

from setuptools import find_packages, setup

HERE = osp.dirname(osp.abspath(__file__))


def read_requirements(name):
    """Requirement lines of requirements/<name>.txt, comments and blanks dropped."""
    with open(osp.join(HERE, 'requirements', name), encoding='utf-8') as f:
        return [line.split('#')[0].strip() for line in f if line.split('#')[0].strip()]


def read_version():
    scope = {}
    with open(osp.join(HERE, 'mmvminet', 'version.py'), encoding='utf-8') as f:
        exec(f.read(), scope)
    return scope['__version__']


setup(
    name='mmvminet',
    version=read_version(),
    description='VMINet (VMI-SA separable self-attention) backbone for OpenMMLab: '
                'mmpretrain, mmdet and mmsegmentation',
    long_description=open(osp.join(HERE, 'README.md'), encoding='utf-8').read()
    if osp.exists(osp.join(HERE, 'README.md')) else '',
    long_description_content_type='text/markdown',
    license='Apache-2.0',
    packages=find_packages(include=['mmvminet', 'mmvminet.*']),
    python_requires='>=3.8',
    install_requires=read_requirements('runtime.txt') + read_requirements('mminstall.txt'),
    extras_require={
        'tests': read_requirements('tests.txt'),
        'optional': read_requirements('optional.txt'),
        'all': read_requirements('tests.txt') + read_requirements('optional.txt'),
    },
    zip_safe=False,
)
