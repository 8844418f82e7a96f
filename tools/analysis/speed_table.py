"""Print benchmark ``--reference`` results as a Markdown table.

    python tools/analysis/speed_table.py work_dirs/speed/*.json

One row per JSON file written by ``benchmark.py --reference --out``: the
config, device, precision, batch, compile, both speeds, their ratio, the
teacher share of the cls_kd step and, on CUDA, both peak memories and their
ratio. Nothing is computed that the benchmark did not measure.
"""
import argparse
import json
import os.path as osp
from typing import List, Optional

COLUMNS = ('config', 'device', 'precision', 'batch', 'compile',
           'cls_kd img/s', 'reference img/s', 'speed ratio',
           'teacher share', 'peak MiB (cls_kd / ref)', 'memory ratio')


def row(results: dict, name: str) -> List[str]:
    ref = results.get('reference')
    if not ref:
        raise SystemExit(f'speed_table.py: error: {name} has no reference '
                         f'results (run benchmark.py with --reference).')
    if ref['peak_memory_mib'] is None:
        memory = ('n/a (CPU: one process)', 'n/a')
    else:
        memory = (f'{results["peak_memory_mib"]:.0f} / '
                  f'{ref["peak_memory_mib"]:.0f}',
                  f'{results["memory_vs_reference"]:.3f}')
    return [
        osp.basename(results['config']),
        results['device_name'],
        results['precision'].split(' ')[0],
        str(results['batch_size']),
        'yes' if results['compile'] else 'no',
        f'{results["images_per_s"]:.1f}',
        f'{ref["images_per_s"]:.1f}',
        f'{results["speed_vs_reference"]:.3f}',
        f'{100 * results["teacher_share"]:.0f}%'
        if results['teacher_share'] is not None else 'n/a',
        *memory,
    ]


def main(argv: Optional[List[str]] = None) -> str:
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('results', nargs='+', help='benchmark JSON files')
    args = parser.parse_args(argv)
    lines = ['| ' + ' | '.join(COLUMNS) + ' |',
             '|' + '---|' * len(COLUMNS)]
    for path in args.results:
        with open(path) as f:
            lines.append('| ' + ' | '.join(row(json.load(f), path)) + ' |')
    table = '\n'.join(lines)
    print(table)
    return table


if __name__ == '__main__':
    main()
