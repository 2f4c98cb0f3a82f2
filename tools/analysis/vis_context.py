"""Per stage of a VMINet classifier, for one image: the token weights alpha and what the context
vector and the local term Q*K each bring to VMI-SA's output.

    python tools/analysis/vis_context.py CONFIG CHECKPOINT IMAGE --out FILE
        [--block mean|first|last]

Matrix-form VMI-SA (Eq. 10) mixes Y = w_ctx * Expand_L(c) + w_loc * (Q*K), with the context
vector c = sum_t alpha_t * M_t * (Q*K)_t. The context term is one vector shared by all tokens,
so a per-token map of it would be flat; what varies over the image is how much each token feeds
it: sum_n |w_ctx * alpha_t * M_tn * (Q*K)_tn|, token t's share. The figure has a row per stage:
the image, alpha resized to the stage's map (VMISA.token_weights; signed, blue < 0 < red), the
tokens' shares of the context term, and the local term's magnitude mean_n |w_loc * (Q*K)_tn|;
maps are averaged over the stage's blocks or taken from its first or last block (--block).
A table gives per stage mean |context term| and mean |local term| over tokens and channels,
averaged over the blocks, and their ratio.
"""
import argparse
import os
import os.path as osp
import sys

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, osp.dirname(osp.abspath(__file__)))  # vis_cam's loaders, beside this file
from vis_cam import load_classifier, load_image  # noqa: E402

from mmvminet.models.vminet import VMISA, build_mask  # noqa: E402


def block_terms(block: VMISA, x: torch.Tensor) -> dict:
    """The pieces of one matrix-form VMI-SA block on its input x (1, C, h, w).

    Returns alpha, share, local: (h, w) maps (see the module doc); ctx, loc: mean |context term|
    and mean |local term| (scalars); y (1, D, h, w): the mix before ReLU6 and out_proj, so that
    ``x + block.out_proj(F.relu6(y))`` is the block's output (the tests check it).
    """
    h, w = x.shape[-2:]
    u = block.dwconv(x)
    qk = F.relu6(block.q_proj(u)) * block.k_proj(u)                            # (1, D, h, w)
    alpha = block.token_weights((h, w))                                        # (L, )
    mask = build_mask(block.mask_kind, h * w, qk.shape[1], qk.device, qk.dtype)  # (L, D)
    parts = block.w_ctx * qk.flatten(2) * (mask.t() * alpha)  # (1, D, L); sum over L: w_ctx c
    context = parts.sum(-1)[..., None, None]                                   # (1, D, 1, 1)
    local = block.w_loc * qk
    return dict(alpha=alpha.reshape(h, w), share=parts.abs().sum(1).reshape(h, w),
                local=local.abs().mean(1)[0], ctx=context.abs().mean(), loc=local.abs().mean(),
                y=context + local)


@torch.no_grad()
def stage_terms(model, inputs: torch.Tensor):
    """Runs the classifier once; returns per stage the list of its blocks' ``block_terms``."""
    stages = model.backbone.stages
    terms = [[] for _ in stages]
    hooks = [block.register_forward_hook(
        lambda module, args, out, i=i: terms[i].append(block_terms(module, args[0])))
        for i, stage in enumerate(stages) for block in stage.blocks]
    try:
        model(inputs, mode='tensor')
    finally:
        for hook in hooks:
            hook.remove()
    return terms


def pick(blocks, key: str, which: str) -> np.ndarray:
    """A stage's (h, w) map: the mean over its blocks, or its first or last block's."""
    maps = [b[key] for b in blocks]
    if which == 'mean':
        return torch.stack(maps).mean(0).numpy()
    return (maps[0] if which == 'first' else maps[-1]).numpy()


def summary_row(blocks):
    """(mean |context term|, mean |local term|, their ratio), averaged over a stage's blocks."""
    ctx = float(torch.stack([b['ctx'] for b in blocks]).mean())
    loc = float(torch.stack([b['loc'] for b in blocks]).mean())
    return ctx, loc, ctx / loc if loc > 0 else float('inf')


def draw(rgb, terms, which: str, out: str):
    """One row per stage: image | alpha | tokens' shares of the context term | local term."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    fig, axes = plt.subplots(len(terms), 4, figsize=(12, 3 * len(terms)), squeeze=False)
    for i, blocks in enumerate(terms):
        alpha = pick(blocks, 'alpha', which)
        bound = float(np.abs(alpha).max()) or 1.0
        h, w = alpha.shape
        ratio = summary_row(blocks)[2]
        panels = [(rgb, None, f'stage {i}: {h}x{w} tokens, ctx/local {ratio:.3g}'),
                  (alpha, 'RdBu_r', f'alpha ({which} of {len(blocks)} blocks)'),
                  (pick(blocks, 'share', which), 'viridis', 'share of context term'),
                  (pick(blocks, 'local', which), 'viridis', '|local term|')]
        for ax, (image, cmap, title) in zip(axes[i], panels):
            limits = dict(vmin=-bound, vmax=bound) if cmap == 'RdBu_r' else {}
            shown = ax.imshow(image, cmap=cmap, interpolation='nearest', **limits)
            if cmap:
                fig.colorbar(shown, ax=ax, fraction=0.046, pad=0.04)
            ax.set_title(title, fontsize=9)
            ax.axis('off')
    fig.tight_layout()
    fig.savefig(out, dpi=100)
    plt.close(fig)


def main(argv=None):
    """Returns the table: [dict(stage, size, blocks, ctx, loc, ratio)] per stage, for tests."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('config')
    parser.add_argument('checkpoint')
    parser.add_argument('image')
    parser.add_argument('--out', required=True, help='figure file (PNG)')
    parser.add_argument('--block', choices=['mean', 'first', 'last'], default='mean',
                        help="which of a stage's blocks the maps show")
    args = parser.parse_args(argv)
    try:
        cfg, model, _ = load_classifier(args.config, args.checkpoint)
        if model.backbone.form != 'matrix':
            raise ValueError(f'{args.config}: form={model.backbone.form!r}; this tool draws '
                             'matrix-form (Eq. 10) blocks')
        inputs, rgb = load_image(cfg, model, args.image)
    except (FileNotFoundError, ValueError) as e:
        sys.exit(f'error: {e}')
    terms = stage_terms(model, inputs)
    os.makedirs(osp.dirname(osp.abspath(args.out)), exist_ok=True)
    draw(rgb, terms, args.block, args.out)

    table = []
    print(f'{"stage":>5} {"tokens":>7} {"blocks":>6} {"mean|ctx term|":>15} '
          f'{"mean|local term|":>17} {"ctx/local":>9}')
    for i, blocks in enumerate(terms):
        h, w = blocks[0]['alpha'].shape
        ctx, loc, ratio = summary_row(blocks)
        print(f'{i:>5} {f"{h}x{w}":>7} {len(blocks):>6} {ctx:>15.4g} {loc:>17.4g} {ratio:>9.3g}')
        table.append(dict(stage=i, size=(h, w), blocks=len(blocks), ctx=ctx, loc=loc,
                          ratio=ratio))
    print(f'figure: {args.out}')
    return table


if __name__ == '__main__':
    main()
