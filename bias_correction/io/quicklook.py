"""Quicklook PNGs of a product: per lead day, maps of corrected SST, the correction and its uncertainty.

Perceptual colour maps (cmocean: ``thermal`` for SST, the diverging ``balance`` centred on zero for
the correction, ``amp`` for the uncertainty) and a coastline contoured from ``global-land-mask``
(bundled with the package, so nothing is downloaded at run time) on a grid four times finer than the
product's. Written next to the product as ``{day}/quicklooks/{product_id}_v{version}_lead{k}.png``
after the NetCDF is published; each PNG is written atomically.
"""

from __future__ import annotations

import io
from pathlib import Path, PurePosixPath
from typing import Any

import numpy as np
import xarray as xr

from bias_correction.storage import Store

PNG_TYPE = "image/png"


def quicklook_key(version_key: str, lead: int) -> str:
    p = PurePosixPath(version_key)
    return str(p.parent / "quicklooks" / f"{p.stem}_lead{lead}.png")


def coastline(lat: np.ndarray, lon: np.ndarray, refine: int = 4) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(lat, lon, land 0/1) on a grid ``refine`` times finer than the product's, for a 0.5 contour."""
    from global_land_mask import globe

    step_y = (lat[-1] - lat[0]) / max(len(lat) - 1, 1)
    step_x = (lon[-1] - lon[0]) / max(len(lon) - 1, 1)
    fy = np.linspace(lat[0] - step_y / 2, lat[-1] + step_y / 2, len(lat) * refine)
    fx = np.linspace(lon[0] - step_x / 2, lon[-1] + step_x / 2, len(lon) * refine)
    gx, gy = np.meshgrid(((fx + 180.0) % 360.0) - 180.0, fy)
    return fy, fx, globe.is_land(gy, gx).astype(np.float32)


def render(ds: xr.Dataset, lead_index: int, coast: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None) -> bytes:
    """PNG bytes of one lead of a single-run product (``io.product.as_single_run`` view)."""
    import cmocean
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    lat, lon = ds["lat"].values, ds["lon"].values
    coast = coast if coast is not None else coastline(lat, lon)
    lead = int(ds["lead_day"].values[lead_index])
    valid = str(ds["time"].values[lead_index])[:10]
    run = str(ds["forecast_reference_time"].values)[:13].replace("T", " ") + "Z"
    corr = ds["sst_correction"].values[lead_index]
    lim = float(np.nanmax(np.abs(corr))) if np.isfinite(corr).any() else 1.0
    panels = [("sst", "corrected SST (°C)", cmocean.cm.thermal, None, None),
              ("sst_correction", "correction (K)", cmocean.cm.balance, -max(lim, 1e-3), max(lim, 1e-3)),
              ("sst_uncertainty", "uncertainty (K)", cmocean.cm.amp, 0.0, None)]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4.4))
    fig.subplots_adjust(left=0.05, right=0.97, bottom=0.12, top=0.85, wspace=0.25)
    step_y = float(lat[1] - lat[0]) if len(lat) > 1 else 0.0
    step_x = float(lon[1] - lon[0]) if len(lon) > 1 else 0.0
    extent = (lon[0] - step_x / 2, lon[-1] + step_x / 2, lat[0] - step_y / 2, lat[-1] + step_y / 2)
    for ax, (var, label, cmap, vmin, vmax) in zip(axes, panels, strict=True):
        im = ax.imshow(ds[var].values[lead_index], origin="lower", extent=extent, cmap=cmap, vmin=vmin, vmax=vmax,
                       interpolation="nearest")
        if coast[2].any() and not coast[2].all():
            ax.contour(coast[1], coast[0], coast[2], levels=[0.5], colors="k", linewidths=0.8)
        ax.set_title(label)
        ax.set_xlabel("longitude (°E)")
        fig.colorbar(im, ax=ax, shrink=0.85)
    axes[0].set_ylabel("latitude (°N)")
    model = f"{ds.attrs.get('sstbc_model_id', '?')} {ds.attrs.get('sstbc_model_version', '')}".strip()
    flag = "  [FALLBACK: raw HYCOM]" if ds.attrs.get("sstbc_fallback") else ""
    fig.suptitle(f"run {run}, lead {lead} (valid {valid}), model {model}{flag}")
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=80)
    plt.close(fig)
    return buf.getvalue()


def write_quicklooks(store: Store, version_key: str, ds: xr.Dataset) -> dict[str, dict[str, Any]]:
    """Write one PNG per lead next to the product; returns STAC-style assets {name: {key, ...}}."""
    from bias_correction.io.product import as_single_run

    one = as_single_run(ds)
    coast = coastline(one["lat"].values, one["lon"].values)
    assets = {}
    for i, lead in enumerate(int(k) for k in one["lead_day"].values):
        key = quicklook_key(version_key, lead)
        store.write_bytes(key, render(one, i, coast))
        assets[f"quicklook_lead{lead}"] = {"key": key, "title": f"quicklook, lead day {lead}", "media_type": PNG_TYPE,
                                           "roles": ["overview"] if lead == 1 else ["visual"]}
    return assets


def plot_file(path: str | Path, out_dir: str | Path | None = None) -> list[Path]:
    """``sstbc plot PRODUCT``: one PNG per lead of a product file into ``out_dir`` (default: beside it)."""
    from bias_correction.errors import ProductError
    from bias_correction.io.netcdf import read_dataset
    from bias_correction.io.product import as_single_run

    path = Path(path)
    try:
        ds = as_single_run(read_dataset(path, engine="netcdf4"))
    except (OSError, ValueError) as exc:
        raise ProductError(f"{path}: does not open as an sstbc product: {exc}") from None
    missing = [v for v in ("sst", "sst_correction", "sst_uncertainty", "lead_day") if v not in ds.variables]
    if missing:
        raise ProductError(f"{path}: not an sstbc product (no {', '.join(missing)})")
    return write_pngs(ds, Path(out_dir) if out_dir is not None else path.parent / "quicklooks", path.stem)


def write_pngs(ds: xr.Dataset, out: Path, stem: str) -> list[Path]:
    """One PNG per lead of a single-run dataset into a local folder, ``{stem}_lead{k}.png`` (atomic)."""
    out.mkdir(parents=True, exist_ok=True)
    coast = coastline(ds["lat"].values, ds["lon"].values)
    written = []
    for i, lead in enumerate(int(k) for k in ds["lead_day"].values):
        dest = out / f"{stem}_lead{lead}.png"
        tmp = dest.with_name(f".{dest.name}.tmp")
        tmp.write_bytes(render(ds, i, coast))
        tmp.replace(dest)
        written.append(dest)
    return written
