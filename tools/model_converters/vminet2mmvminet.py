"""Convert an authors' VMINet 2.0 checkpoint to an mmpretrain ImageClassifier checkpoint.

    python tools/model_converters/vminet2mmvminet.py VMINet2.0-XS-checkpoint.pth.tar \
        checkpoints/vminet_xs_in1k.pth [--arch xs] [--ema]

The output loads into ``configs/vminet_{arch}_in1k.py`` with no missing or unexpected keys
(``backbone.*`` and ``head.fc.*``). The key mapping lives in ``mmvminet/models/vminet.py``.
"""
import argparse
import os
import sys

from mmvminet.models.checkpoint import (CheckpointMismatchError, check_state_dict,
                                        infer_official_arch, read_state_dict,
                                        save_checkpoint_atomic)
from mmvminet.models.vminet import VMINet, convert_official_state_dict, is_official_state_dict


def convert(src: str, dst: str, arch: str = None, use_ema: bool = False) -> str:
    """Convert ``src`` to ``dst``; returns the variant name (or the arch dict as a string)."""
    official = read_state_dict(src, use_ema=use_ema)
    if not is_official_state_dict(official):
        raise CheckpointMismatchError(
            f'{src!r} is not an official VMINet checkpoint: no stem.0.conv.weight / '
            f'stages.*.f1.conv.* keys; its keys look like {sorted(official)[:3]}')
    found = infer_official_arch(official)
    names = [n for n, s in VMINet.arch_settings.items()
             if (s['base_dim'], s['ratio']) == (found['base_dim'], found['ratio'])
             and tuple(found['depths']) == VMINet.default_depths]
    backbone = convert_official_state_dict(
        {k: v for k, v in official.items() if not k.startswith('head.')})
    # a model of the asked variant (or of the variant the shapes say) must take every tensor
    model = VMINet(arch=arch if arch else (names[0] if names else found))
    unexpected = check_state_dict(model, backbone, repr(src))
    if unexpected:
        raise CheckpointMismatchError(f'{src!r} has keys VMINet does not know, first: '
                                      f'{unexpected[0]!r}')
    state_dict = {f'backbone.{k}': v for k, v in backbone.items()}
    for name in ('weight', 'bias'):
        if f'head.{name}' not in official:
            raise CheckpointMismatchError(f'{src!r} has no classification head (head.{name})')
        state_dict[f'head.fc.{name}'] = official[f'head.{name}']
    variant = arch or (names[0] if names else str(found))
    os.makedirs(os.path.dirname(os.path.abspath(dst)), exist_ok=True)
    save_checkpoint_atomic(
        dict(state_dict=state_dict,
             meta=dict(converted_from=os.path.basename(src), arch=variant, ema=use_ema)), dst)
    return variant


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('src', help='official .pth.tar (state_dict, state_dict_ema or bare)')
    parser.add_argument('dst', help='output .pth for configs/vminet_*_in1k.py')
    parser.add_argument('--arch', choices=sorted(VMINet.arch_settings),
                        help='expected variant; default: read off the checkpoint')
    parser.add_argument('--ema', action='store_true', help='convert state_dict_ema')
    args = parser.parse_args(argv)
    try:
        variant = convert(args.src, args.dst, args.arch, args.ema)
    except (CheckpointMismatchError, FileNotFoundError) as e:
        sys.exit(f'error: {e}')
    print(f'converted {args.src} (VMINet-{variant}) -> {args.dst}')


if __name__ == '__main__':
    main()
