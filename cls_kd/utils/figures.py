"""Figures of 2-D maps and vectors in rows, each row split into groups of
panels that share one colour scale and one colour bar (used by
``tools/analysis/visualize_distill.py``).

A map is drawn at its own resolution by default: one flat block per token or
position, so that the drawn array is the map itself.
"""
from dataclasses import dataclass, field
from typing import List, Optional, Tuple

import numpy as np
import torch
import torch.nn.functional as F
from matplotlib.figure import Figure

__all__ = ['Panel', 'Group', 'draw_rows']


@dataclass
class Panel:
    """One axes of a figure.

    Args:
        title (str): Its title (lines separated by ``\\n``).
        data (ndarray, optional): A map (h, w), or vectors (k, C) for
            ``'bars'`` and ``'strip'``; None for ``'image'``.
        kind (str): ``'map'``, ``'bars'`` (k bars per index), ``'strip'``
            (one row of colours per vector) or ``'image'``. Defaults to
            ``'map'``.
        image (ndarray, optional): An RGB image: the panel (``'image'``),
            or drawn under the map (see ``overlay`` of :func:`draw_rows`).
        names (tuple[str]): Bars: the legend; strip: the row labels.
        gid (str): The axes' ``gid`` (defaults to the title).
    """
    title: str
    data: Optional[np.ndarray] = None
    kind: str = 'map'
    image: Optional[np.ndarray] = None
    names: Tuple[str, ...] = ()
    gid: str = ''


@dataclass
class Group:
    """Panels drawn on one colour scale, with one colour bar.

    Args:
        panels (list[Panel]): The panels, side by side.
        unit (str): The colour bar's label (for bars: the y axis's); no
            colour bar when empty (the input image).
        cmap (str): The colour map. Defaults to ``'viridis'``.
        scale (str): ``'zero'``: from min(0, smallest value) to the largest;
            ``'symmetric'``: from -m to m, m the largest absolute value.
            Defaults to ``'zero'``.

    ``limits`` holds the (vmin, vmax) every panel of the group is drawn
    with.
    """
    panels: List[Panel]
    unit: str = ''
    cmap: str = 'viridis'
    scale: str = 'zero'
    limits: Tuple[float, float] = field(init=False, default=(0., 1.))

    def __post_init__(self):
        values = np.concatenate(
            [np.ravel(p.data) for p in self.panels if p.data is not None]
            or [np.zeros(1)])
        values = values[np.isfinite(values)]
        if not values.size:
            values = np.zeros(1)
        if self.scale == 'symmetric':
            top = float(np.abs(values).max()) or 1.
            self.limits = (-top, top)
        else:
            low, high = min(float(values.min()), 0.), float(values.max())
            self.limits = (low, high if high > low else low + 1.)


def _upsample(data: np.ndarray, size: Tuple[int, int]) -> np.ndarray:
    big = F.interpolate(torch.as_tensor(data)[None, None].float(), size=size,
                        mode='bilinear', align_corners=False)
    return big[0, 0].numpy()


def _draw_map(ax, panel: Panel, group: Group, resolution: str,
              overlay: str):
    """Draw ``panel.data`` on ``group``'s scale: flat blocks at native
    resolution (the drawn array is the map itself), or upsampled."""
    data, image = panel.data, panel.image
    h, w = data.shape
    if image is not None:
        H, W = image.shape[:2]
        extent = (-0.5, W - 0.5, H - 0.5, -0.5)
        size = (H, W)
    else:
        extent = (-0.5, w - 0.5, h - 0.5, -0.5)
        size = (16 * h, 16 * w)
    blend = image is not None and overlay == 'blend'
    if blend:
        ax.imshow(image, extent=extent)
    if resolution == 'smooth':
        data = _upsample(data, size)
    shown = ax.imshow(data, cmap=group.cmap, vmin=group.limits[0],
                      vmax=group.limits[1], interpolation='nearest',
                      extent=extent, alpha=0.5 if blend else None)
    if image is not None and overlay == 'contour':
        grey = image.astype(np.float64).mean(-1)
        level = (grey.min() + grey.max()) / 2
        if grey.max() > grey.min():
            ax.contour(grey, levels=[level], colors='white',
                       linewidths=0.8, extent=extent, origin='upper')
    ax.set_xlim(extent[:2])
    ax.set_ylim(extent[2:])
    return shown


def _draw_vectors(ax, panel: Panel, group: Group):
    """Bars (entries grouped by index, one colour per vector) or a strip
    (one row per vector)."""
    data = np.atleast_2d(panel.data)
    if panel.kind == 'strip':
        shown = ax.imshow(data, cmap=group.cmap, vmin=group.limits[0],
                          vmax=group.limits[1], aspect='auto',
                          interpolation='nearest')
        ax.set_yticks(range(len(panel.names)), panel.names, fontsize=6)
        ax.tick_params(axis='x', labelsize=6)
        ax.set_xlabel('index', fontsize=6)
        return shown
    k, n = data.shape
    width = 0.8 / k
    for i, (row, name) in enumerate(zip(data, panel.names)):
        ax.bar(np.arange(n) + (i - (k - 1) / 2) * width, row, width,
               label=name, color=f'C{i}' if k > 1 else 'C3')
    ax.axhline(0, color='black', linewidth=0.5)
    ax.set_xticks(range(n) if n <= 12 else range(0, n, 4))
    ax.tick_params(labelsize=6)
    if k > 1:
        ax.legend(fontsize=6, loc='best', frameon=False)
    ax.set_ylabel(group.unit, fontsize=6)
    return None


def draw_rows(rows: List[List[Group]],
              path: str,
              title: str = '',
              resolution: str = 'native',
              overlay: str = 'contour') -> Figure:
    """Draw ``rows`` and save them to ``path``: a colour bar after each
    group that has a unit (bars have their y axis), rows padded to the
    widest.

    Args:
        rows (list[list[Group]]): The rows, left to right.
        path (str): The PNG to write.
        title (str): The figure's title. Defaults to none.
        resolution (str): ``'native'``: maps as flat blocks, one per entry
            (nearest); ``'smooth'``: upsampled bilinearly (16 times, or to
            the image under them). Defaults to ``'native'``.
        overlay (str): The image under a map that has one: its outline at
            mid-grey level (``'contour'``), the image blended at alpha 0.5
            (``'blend'``), or ``'none'``. Defaults to ``'contour'``.

    Returns:
        Figure: The figure (its axes carry the panels' ``gid``).
    """
    widths = []
    for row in rows:
        ratios = []
        for group in row:
            for panel in group.panels:
                gap = panel.kind in ('bars', 'strip')
                ratios += [0.35] * gap + [1.5 if gap else 1.]
            if group.unit and group.panels[0].kind != 'bars':
                ratios += [0.07, 0.5]
        widths.append(ratios)
    total = max(sum(r) for r in widths)
    # Inches: panels 1.6 high, 0.55 above each for its (up to 3-line) title.
    # Bars and strips: room for their tick labels below each row.
    vectors = any(p.kind in ('bars', 'strip') for row in rows
                  for g in row for p in g.panels)
    tall, head = 1.6, 0.5 if title else 0.
    above, below = (0.85, 0.4) if vectors else (0.55, 0.1)
    height = len(rows) * (tall + above) + head + below
    fig = Figure(figsize=(1.75 * total, height))
    outer = fig.add_gridspec(len(rows), 1, left=0.01, right=0.99,
                             bottom=below / height,
                             top=1 - (above + head) / height,
                             hspace=above / tall)
    for spec, row, ratios in zip(outer, rows, widths):
        pad = total - sum(ratios)
        inner = spec.subgridspec(1, len(ratios) + (pad > 1e-6),
                                 width_ratios=ratios + [pad] * (pad > 1e-6),
                                 wspace=0.08)
        column = 0
        for group in row:
            shown = None
            for panel in group.panels:
                if panel.kind in ('bars', 'strip'):
                    column += 1  # room for the tick labels
                ax = fig.add_subplot(inner[0, column])
                column += 1
                ax.set_gid(panel.gid or panel.title)
                ax.set_title(panel.title, fontsize=7)
                if panel.kind == 'image':
                    ax.imshow(panel.image)
                    ax.axis('off')
                elif panel.kind == 'map':
                    shown = _draw_map(ax, panel, group, resolution,
                                      overlay)
                    ax.axis('off')
                else:
                    shown = _draw_vectors(ax, panel, group) or shown
            if group.unit and group.panels[0].kind != 'bars':
                cax = fig.add_subplot(inner[0, column])
                bar = fig.colorbar(shown, cax=cax)
                bar.set_label(group.unit, fontsize=7)
                bar.ax.tick_params(labelsize=6.5)
                column += 2
    if title:
        fig.suptitle(title, fontsize=8)
    fig.savefig(path, dpi=100)
    return fig
