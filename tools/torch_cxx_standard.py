"""Tell which C++ standard the installed torch's headers demand.

mmcv 2.1.0's setup.py hard-codes ``-std=c++17``; torch 2.14's ``ATen/ATen.h`` stops with
"C++20 or later compatible compiler is required". ``tools/setup_env.sh`` asks this script, so the
flag is raised only for a torch whose headers need it.

    python tools/torch_cxx_standard.py                # prints 17 or 20
    python tools/torch_cxx_standard.py --needs-cxx20  # exit 0 if C++20 is required, else 1
"""
import argparse
import os
import re
import sys


def required_cxx_standard() -> int:
    import torch.utils.cpp_extension as ext
    header = os.path.join(ext.include_paths()[0], 'ATen', 'ATen.h')
    with open(header, encoding='utf-8') as f:
        text = f.read()
    # e.g. '#if !defined(_MSC_VER) && __cplusplus < 202002L' followed by '#error C++20 ...'
    match = re.search(r'__cplusplus\s*<\s*(\d{6})L\s*\n\s*#\s*error', text)
    if match is None:
        return 17
    return {'201703': 17, '202002': 20, '202302': 23}.get(match.group(1)[:6], 20)


if __name__ == '__main__':
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--needs-cxx20', action='store_true')
    args = parser.parse_args()
    std = required_cxx_standard()
    if args.needs_cxx20:
        sys.exit(0 if std >= 20 else 1)
    print(std)
