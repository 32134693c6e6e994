"""A seeded synthetic ocean ("digital twin") that both stand-in services sample.

Why: the pipeline must be testable end to end without the network. OISST (0.25 deg daily means) and
HYCOM (0.08 x 0.04 deg, 3-hourly forecasts) files generated from one continuous field are mutually
consistent at any resolution, and the twin knows exactly which part of the HYCOM - OISST difference
is learnable, so tests can judge a correction against the best achievable RMSE (the oracle floor).

Model (every amplitude is a :class:`TwinConfig` field):

* truth(t) = climatology(lat, t) + mesoscale(t), floored at the freezing point.
  Mesoscale = sum of random plane waves with integer zonal wavenumbers (periodic in longitude),
  wavelengths 150-500 km, slow phase speeds and slow amplitude modulation.
* OISST(day) = mean of truth over the 8 three-hourly instants 00Z..21Z of ``day`` with each mesoscale
  wave damped by exp(-(k/k0)^2) (the OI smoothing), plus smooth analysis noise seeded by the day
  (a different seed for the preliminary version).
* HYCOM(run, tau) at valid time v = truth(v) + diurnal cycle + bias + random error, where
  bias = warm offset growing with lead + seasonal term + over-amplified mesoscale anomaly
  + coastal cold bias (all *predictable*), and random error = AR(1)-in-lead smooth random fields
  seeded by (run, lead day), amplitude growing with lead (*unpredictable*).
* Daily-mean HYCOM of lead day k = mean of the 8 values tau = 24k-12, 24k-9, ..., 24k+9 (valid
  day run.date()+k, 00Z..21Z). The diurnal cycle (first harmonic) averages out exactly over them.
  ``unpredictable`` = daily-mean random error - OISST analysis noise; ``predictable`` = the rest of
  (daily-mean HYCOM - OISST), so the two add up exactly to what the generated files contain.
* Sea-surface elevation (HYCOM ``surf_el``, metres): truth = large-scale steric height (high in the
  tropics, low at the poles, a gentle zonal tilt) + a small seasonal term in phase with the SST one +
  a mesoscale part made of the SST mesoscale waves with the same phases (warm eddies stand high; long
  waves weighted up, std ~0.13 m). HYCOM's forecast = truth + offset growing with lead + a slightly
  over-amplified mesoscale + an AR(1)-in-lead random error seeded by ("ssh-err", run, lead day). None of
  it draws from the generators of the fields above, which stay bit-identical.
"""

from __future__ import annotations

import hashlib
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone

import numpy as np
from scipy import ndimage

EARTH_RADIUS_KM = 6371.0
KM_PER_DEG = math.pi * EARTH_RADIUS_KM / 180.0
EPOCH = datetime(2000, 1, 1)
YEAR_DAYS = 365.2425

# Native GLBy0.08 grid used for the coastal term (lat = -80 + 0.04 j, lon = 0.08 i).
_NAT_DLAT = 0.04
_NAT_DLON = 0.08
_NAT_NLON = 4500
_TILE_J = 100  # 4 degrees of latitude
_TILE_I = 50  # 4 degrees of longitude
_BLAS_MIN_WORK = 20_000_000


@dataclass(frozen=True)
class TwinConfig:
    """Every knob of the twin; defaults are tuned for the South China Sea box (12-16N, 110-114E)."""

    seed: int = 2021
    # climatology
    clim_equator: float = 28.5
    clim_sin2: float = 27.0
    clim_polar_extra: float = 6.0  # extra polar cooling * sin^8(lat): gives sea ice near the poles
    seasonal_amp: float = 3.0  # times sin(lat)
    seasonal_peak_doy: float = 227.0  # mid-August in the northern hemisphere
    freeze_c: float = -1.8
    # mesoscale
    n_meso_waves: int = 32
    meso_std: float = 0.45
    meso_lmin_km: float = 150.0
    meso_lmax_km: float = 500.0
    meso_speed_km_day: float = 5.0
    meso_modulation: float = 0.3
    meso_mod_period_days: tuple[float, float] = (20.0, 60.0)
    # OISST analysis
    oisst_smooth_km: float = 200.0  # k0 = 2*pi/oisst_smooth_km
    oisst_noise_std: float = 0.08
    n_noise_waves: int = 24
    noise_lmin_km: float = 150.0
    noise_lmax_km: float = 600.0
    prelim_noise_factor: float = 1.25
    err_mean: float = 0.13
    err_std: float = 0.025
    ice_threshold_c: float = -1.5
    # HYCOM
    diurnal_amp: float = 0.3
    diurnal_peak_local_hour: float = 15.0
    bias_mean0: float = 0.10
    bias_mean_per_day: float = 0.04
    bias_season_amp: float = 0.2
    bias_state_gain0: float = 0.30
    bias_state_gain_per_day: float = 0.015
    coast_amp: float = -0.5
    coast_scale_km: float = 50.0
    coast_pad_km: float = 300.0
    err_amp0: float = 0.06
    err_amp_per_day: float = 0.03
    err_rho: float = 0.7  # correlation of the random error between consecutive lead days
    n_err_waves: int = 24
    err_lmin_km: float = 200.0
    err_lmax_km: float = 800.0
    # depth profile
    mixed_layer_m: float = 30.0
    thermocline_scale_m: float = 600.0
    deep_temp_c: float = 2.0
    # sea-surface elevation (HYCOM ``surf_el``, metres); no random draw of the fields above depends on these
    ssh_equator_m: float = 0.55
    ssh_sin2_m: float = 1.6  # steric height falls poleward: 0.55 m at the equator, -1.05 m at the poles
    ssh_zonal_m: float = 0.08  # a gentle basin-scale tilt, times cos(lat) sin(lon)
    ssh_seasonal_m: float = 0.06  # times sin(lat), in phase with the SST seasonal cycle (warm = high)
    ssh_meso_std_m: float = 0.13  # mesoscale elevation: the SST mesoscale waves, same phases (warm eddies high)
    ssh_meso_ref_km: float = 300.0  # wave weights (L / ssh_meso_ref_km)^0.5: larger eddies stand higher
    ssh_bias_m: float = 0.01
    ssh_bias_per_day_m: float = 0.004
    ssh_state_gain0: float = 0.05  # HYCOM over-amplifies its eddies a little in elevation too
    ssh_state_gain_per_day: float = 0.01
    ssh_err_amp0_m: float = 0.004
    ssh_err_amp_per_day_m: float = 0.005
    ssh_err_rho: float = 0.7
    n_ssh_err_waves: int = 16
    ssh_err_lmin_km: float = 200.0
    ssh_err_lmax_km: float = 800.0


@dataclass(frozen=True)
class _Waves:
    """A set of plane waves: phase = m*lon + l*lat (radians); k in rad/km."""

    m: np.ndarray
    l: np.ndarray
    k: np.ndarray
    amp: np.ndarray
    phase: np.ndarray
    omega: np.ndarray
    mod_freq: np.ndarray
    mod_phase: np.ndarray


def _make_waves(rng: np.random.Generator, n: int, lmin_km: float, lmax_km: float, std: float,
                speed_km_day: float = 0.0, mod_periods: tuple[float, float] = (20.0, 60.0)) -> _Waves:
    """Random plane waves whose sum has standard deviation ``std`` (integer zonal wavenumbers)."""
    lengths = np.exp(rng.uniform(math.log(lmin_km), math.log(lmax_km), n))
    k = 2 * math.pi / lengths
    theta = rng.uniform(0, 2 * math.pi, n)
    m = np.round(k * np.cos(theta) * EARTH_RADIUS_KM)
    l = k * np.sin(theta) * EARTH_RADIUS_KM
    k_eff = np.hypot(m, l) / EARTH_RADIUS_KM
    amp = np.full(n, std * math.sqrt(2.0 / n))
    phase = rng.uniform(0, 2 * math.pi, n)
    omega = k_eff * rng.uniform(-speed_km_day, speed_km_day, n)
    mod_freq = 2 * math.pi / rng.uniform(mod_periods[0], mod_periods[1], n)
    mod_phase = rng.uniform(0, 2 * math.pi, n)
    return _Waves(m, l, k_eff, amp, phase, omega, mod_freq, mod_phase)


def _wave_sum(lat: np.ndarray, lon: np.ndarray, waves: _Waves, coef: np.ndarray) -> np.ndarray:
    """Re(sum_w coef[t, w] exp(i(m lon + l lat))) as (T, nlat, nlon), by one separable matmul."""
    phi = np.deg2rad(lat)
    lam = np.deg2rad(lon)
    e_lat = np.exp(1j * np.outer(phi, waves.l))  # (nlat, W)
    e_lon = np.exp(1j * np.outer(waves.m, lam))  # (W, nlon)
    weighted = e_lat[None, :, :] * coef[:, None, :]  # (T, nlat, W)
    if weighted.size * e_lon.shape[1] < _BLAS_MIN_WORK:
        # small problems: numpy's own loop beats multi-threaded BLAS start-up on a busy machine
        return np.real(np.einsum("taw,wb->tab", weighted, e_lon))
    return np.real(np.matmul(weighted, e_lon))


def _as_naive_utc(when: datetime) -> datetime:
    if when.tzinfo is not None:
        when = when.astimezone(timezone.utc).replace(tzinfo=None)
    return when


def _t_days(when: datetime | date) -> float:
    """Days since 2000-01-01 00Z (a date means its 00Z)."""
    if not isinstance(when, datetime):
        when = datetime(when.year, when.month, when.day)
    return (_as_naive_utc(when) - EPOCH).total_seconds() / 86400.0


def _grid_key(lat: np.ndarray, lon: np.ndarray) -> str:
    h = hashlib.sha1()
    h.update(np.ascontiguousarray(lat, dtype=np.float64).tobytes())
    h.update(b"|")
    h.update(np.ascontiguousarray(lon, dtype=np.float64).tobytes())
    return h.hexdigest()


def _is_land(lat: np.ndarray, lon_pm180: np.ndarray) -> np.ndarray:
    """global_land_mask lookup; imported lazily because loading its 1 km mask takes ~3 s."""
    from global_land_mask import globe

    return np.asarray(globe.is_land(lat, lon_pm180), dtype=bool)


def _to_pm180(lon: np.ndarray) -> np.ndarray:
    return (np.asarray(lon, dtype=np.float64) + 180.0) % 360.0 - 180.0


class Twin:
    """The synthetic ocean. Deterministic given its config; safe to share between threads."""

    def __init__(self, config: TwinConfig = TwinConfig()) -> None:
        self.config = config
        c = config
        rng = self._rng("meso")
        self._meso = _make_waves(rng, c.n_meso_waves, c.meso_lmin_km, c.meso_lmax_km, c.meso_std,
                                 c.meso_speed_km_day, c.meso_mod_period_days)
        k0 = 2 * math.pi / c.oisst_smooth_km
        self._damp = np.exp(-((self._meso.k / k0) ** 2))
        # surf_el mesoscale = the same waves (phases, propagation, modulation) weighted towards long waves,
        # normalised to a standard deviation of ssh_meso_std_m. Deterministic: no random draw.
        weight = np.sqrt((2 * math.pi / self._meso.k) / c.ssh_meso_ref_km)
        weight = weight / math.sqrt(float(np.mean(weight**2)))
        self._ssh_weight = weight * (c.ssh_meso_std_m / c.meso_std) if c.meso_std > 0 else np.zeros_like(weight)
        self._land_cache: dict[str, np.ndarray] = {}
        self._coast_cache: dict[str, np.ndarray] = {}
        self._tile_cache: dict[tuple[int, int], np.ndarray] = {}
        self._lock = threading.Lock()

    # ------------------------------------------------------------------ helpers
    def _rng(self, *tags: object) -> np.random.Generator:
        """A generator seeded by (config seed, tags): every random field is reproducible on its own."""
        words = [self.config.seed] + [int(hashlib.sha1(str(t).encode()).hexdigest()[:8], 16) for t in tags]
        return np.random.default_rng(np.random.SeedSequence(words))

    def _meso_coef(self, t: np.ndarray) -> np.ndarray:
        """Complex wave coefficients (T, W) of the mesoscale field at times t (days)."""
        w = self._meso
        t = np.atleast_1d(np.asarray(t, dtype=np.float64))[:, None]
        amp = w.amp * (1.0 + self.config.meso_modulation * np.sin(w.mod_freq * t + w.mod_phase))
        return amp * np.exp(1j * (w.phase - w.omega * t))

    def _clim(self, lat: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Climatology (T, nlat) at times t (days since 2000-01-01)."""
        c = self.config
        s = np.sin(np.deg2rad(np.asarray(lat, dtype=np.float64)))
        base = c.clim_equator - c.clim_sin2 * s**2 - c.clim_polar_extra * s**8
        doy = np.mod(np.atleast_1d(t), YEAR_DAYS)[:, None]
        seas = c.seasonal_amp * s[None, :] * np.cos(2 * math.pi * (doy - c.seasonal_peak_doy) / YEAR_DAYS)
        return np.maximum(base[None, :] + seas, c.freeze_c)

    def _noise_waves(self, day: date, preliminary: bool) -> _Waves:
        c = self.config
        std = c.oisst_noise_std * (c.prelim_noise_factor if preliminary else 1.0)
        return _make_waves(self._rng("noise", day.toordinal(), int(preliminary)), c.n_noise_waves,
                           c.noise_lmin_km, c.noise_lmax_km, std)

    def _analysis_noise(self, day: date, lat: np.ndarray, lon: np.ndarray, preliminary: bool = False) -> np.ndarray:
        w = self._noise_waves(day, preliminary)
        coef = (w.amp * np.exp(1j * w.phase))[None, :]
        return _wave_sum(lat, lon, w, coef)[0]

    def _err_anchor_fields(self, run: datetime, n_anchor: int, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """AR(1)-in-lead unit-variance random fields e_n (n = lead day 0..n_anchor-1) of one run."""
        c = self.config
        day = _as_naive_utc(run).date().toordinal()
        rho = c.err_rho
        out = np.empty((n_anchor, len(lat), len(lon)))
        prev = None
        for n in range(n_anchor):
            w = _make_waves(self._rng("fcst-err", day, n), c.n_err_waves, c.err_lmin_km, c.err_lmax_km, 1.0)
            fresh = _wave_sum(lat, lon, w, (w.amp * np.exp(1j * w.phase))[None, :])[0]
            prev = fresh if prev is None else rho * prev + math.sqrt(1 - rho**2) * fresh
            out[n] = prev
        return out

    def _random_error(self, run: datetime, tau_hours: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Unpredictable forecast error (T, nlat, nlon): lead-interpolated anchors times a growing amplitude."""
        c = self.config
        x = np.asarray(tau_hours, dtype=np.float64) / 24.0
        if np.any(x < 0):
            raise ValueError("tau_hours must be >= 0")
        n_anchor = int(np.floor(x.max())) + 2
        anchors = self._err_anchor_fields(run, n_anchor, lat, lon)
        n = np.floor(x).astype(int)
        f = x - n
        weights = np.zeros((len(x), n_anchor))
        weights[np.arange(len(x)), n] = 1 - f
        weights[np.arange(len(x)), n + 1] += f
        amp = c.err_amp0 + c.err_amp_per_day * x
        return np.tensordot(weights * amp[:, None], anchors, axes=(1, 0))

    # ------------------------------------------------------------------ land and coast
    def land(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Land mask (nlat, nlon) from global_land_mask at the grid points; cached per grid."""
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        key = _grid_key(lat, lon)
        hit = self._land_cache.get(key)
        if hit is None:
            la, lo = np.meshgrid(np.clip(lat, -90, 90), _to_pm180(lon), indexing="ij")
            hit = _is_land(la, lo)
            hit.setflags(write=False)
            with self._lock:
                self._land_cache[key] = hit
        return hit

    def _coast_tile(self, tj: int, ti: int) -> np.ndarray:
        """Distance to land (km) on one 4x4 degree tile of the native grid, from a padded window."""
        key = (tj, ti)
        hit = self._tile_cache.get(key)
        if hit is not None:
            return hit
        c = self.config
        lat_c = -80 + _NAT_DLAT * (tj * _TILE_J + _TILE_J / 2)
        dy = _NAT_DLAT * KM_PER_DEG
        dx = _NAT_DLON * KM_PER_DEG * max(math.cos(math.radians(min(abs(lat_c), 89.0))), 0.05)
        pj = int(math.ceil(c.coast_pad_km / dy))
        pi_ = min(int(math.ceil(c.coast_pad_km / dx)), _NAT_NLON // 2)
        jj = np.arange(tj * _TILE_J - pj, (tj + 1) * _TILE_J + pj)
        ii = np.arange(ti * _TILE_I - pi_, (ti + 1) * _TILE_I + pi_)
        lat = np.clip(-80 + _NAT_DLAT * jj, -90, 90)
        lon = _to_pm180(_NAT_DLON * ii)
        la, lo = np.meshgrid(lat, lon, indexing="ij")
        land = _is_land(la, lo)
        if land.any():
            dist = ndimage.distance_transform_edt(~land, sampling=(dy, dx))
        else:
            dist = np.full(land.shape, np.inf)
        tile = np.ascontiguousarray(dist[pj:pj + _TILE_J, pi_:pi_ + _TILE_I])
        tile.setflags(write=False)
        with self._lock:
            self._tile_cache[key] = tile
        return tile

    def coast_distance_km(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Distance (km) to the nearest land cell of the native grid, at the nearest native cell."""
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        j = np.round((lat + 80.0) / _NAT_DLAT).astype(np.int64)
        i = np.round(np.mod(lon, 360.0) / _NAT_DLON).astype(np.int64) % _NAT_NLON
        out = np.empty((len(lat), len(lon)))
        tjs, tis = j // _TILE_J, i // _TILE_I
        for tj in np.unique(tjs):
            rows = np.nonzero(tjs == tj)[0]
            for ti in np.unique(tis):
                cols = np.nonzero(tis == ti)[0]
                tile = self._coast_tile(int(tj), int(ti))
                out[np.ix_(rows, cols)] = tile[np.ix_(j[rows] - tj * _TILE_J, i[cols] - ti * _TILE_I)]
        return out

    def _coast_bias(self, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        key = _grid_key(lat, lon)
        hit = self._coast_cache.get(key)
        if hit is None:
            c = self.config
            hit = c.coast_amp * np.exp(-self.coast_distance_km(lat, lon) / c.coast_scale_km)
            hit.setflags(write=False)
            with self._lock:
                self._coast_cache[key] = hit
        return hit

    # ------------------------------------------------------------------ public fields
    def _truth_t(self, t: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(truth, mesoscale) as (T, nlat, nlon), no land mask."""
        meso = _wave_sum(lat, lon, self._meso, self._meso_coef(t))
        truth = np.maximum(self._clim(lat, t)[:, :, None] + meso, self.config.freeze_c)
        return truth, meso

    def truth(self, when: datetime, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Instantaneous true SST (degC, nlat x nlon) at ``when`` (UTC); NaN on land."""
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        truth, _ = self._truth_t(np.array([_t_days(when)]), lat, lon)
        return np.where(self.land(lat, lon), np.nan, truth[0])

    def oisst(self, day: date, lat: np.ndarray, lon: np.ndarray, preliminary: bool = False) -> dict[str, np.ndarray]:
        """The OISST-like daily analysis of ``day``: sst, anom, err (degC), ice (%); NaN on land, ice NaN if none."""
        c = self.config
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        if isinstance(day, datetime):
            day = day.date()
        t = _t_days(day) + np.arange(8) / 8.0
        clim = self._clim(lat, t).mean(axis=0)  # (nlat,)
        coef = (self._meso_coef(t).mean(axis=0) * self._damp)[None, :]
        smooth = _wave_sum(lat, lon, self._meso, coef)[0]
        noise = self._analysis_noise(day, lat, lon, preliminary)
        sst = np.maximum(clim[:, None] + smooth + noise, c.freeze_c)
        land = self.land(lat, lon)
        sst = np.where(land, np.nan, sst)
        anom = sst - clim[:, None]
        w = _make_waves(self._rng("err", day.toordinal()), 12, 300.0, 1500.0, 1.0)
        err = c.err_mean + c.err_std * _wave_sum(lat, lon, w, (w.amp * np.exp(1j * w.phase))[None, :])[0]
        err = np.where(land, np.nan, np.clip(err, 0.05, 0.5))
        ice = np.clip(15.0 + 85.0 * (c.ice_threshold_c - sst) / 0.25, 15.0, 100.0)
        ice = np.where(sst < c.ice_threshold_c, ice, np.nan)
        return {"sst": sst, "anom": anom, "err": err, "ice": ice}

    def _hycom_surface(self, run: datetime, tau_hours: np.ndarray, lat: np.ndarray, lon: np.ndarray,
                       with_error: bool = True) -> np.ndarray:
        """Surface HYCOM forecast (T, nlat, nlon) without land mask; see the module docstring."""
        c = self.config
        run = _as_naive_utc(run)
        tau = np.asarray(tau_hours, dtype=np.float64)
        t = _t_days(run) + tau / 24.0
        lead = tau / 24.0
        truth, meso = self._truth_t(t, lat, lon)
        utc_hour = np.mod(t, 1.0) * 24.0
        local = utc_hour[:, None] + _to_pm180(lon)[None, :] / 15.0
        diurnal = c.diurnal_amp * np.cos(2 * math.pi * (local - c.diurnal_peak_local_hour) / 24.0)
        doy = np.mod(t, YEAR_DAYS)
        offset = c.bias_mean0 + c.bias_mean_per_day * lead + c.bias_season_amp * np.cos(2 * math.pi * doy / YEAR_DAYS)
        gain = c.bias_state_gain0 + c.bias_state_gain_per_day * lead
        out = truth + diurnal[:, None, :] + offset[:, None, None] + gain[:, None, None] * meso
        out = out + self._coast_bias(lat, lon)[None]
        if with_error:
            out = out + self._random_error(run, tau, lat, lon)
        return np.maximum(out, c.freeze_c)

    def hycom(self, run: datetime, tau_hours: np.ndarray, lat: np.ndarray, lon: np.ndarray,
              depth: np.ndarray = np.array([0.0])) -> np.ndarray:
        """HYCOM-like forecast of run ``run`` at valid times run+tau: degC (ntau, ndepth, nlat, nlon), NaN on land."""
        c = self.config
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        depth = np.atleast_1d(np.asarray(depth, dtype=np.float64))
        surf = self._hycom_surface(run, np.atleast_1d(tau_hours), lat, lon)
        surf = np.where(self.land(lat, lon)[None], np.nan, surf)
        drop = 1.0 - np.exp(-np.maximum(depth - c.mixed_layer_m, 0.0) / c.thermocline_scale_m)  # (ndepth,)
        deep = np.minimum(surf, c.deep_temp_c)
        return surf[:, None] - (surf - deep)[:, None] * drop[None, :, None, None]

    # ------------------------------------------------------------------ sea-surface elevation (surf_el)
    def _ssh_clim(self, lat: np.ndarray, lon: np.ndarray, t: np.ndarray) -> np.ndarray:
        """Large-scale + seasonal elevation (T, nlat, nlon) in metres at times t (days)."""
        c = self.config
        phi = np.deg2rad(np.asarray(lat, dtype=np.float64))
        lam = np.deg2rad(np.asarray(lon, dtype=np.float64))
        s = np.sin(phi)
        base = (c.ssh_equator_m - c.ssh_sin2_m * s**2)[:, None] + c.ssh_zonal_m * np.outer(np.cos(phi), np.sin(lam))
        doy = np.mod(np.atleast_1d(np.asarray(t, dtype=np.float64)), YEAR_DAYS)[:, None]
        seas = c.ssh_seasonal_m * s[None, :] * np.cos(2 * math.pi * (doy - c.seasonal_peak_doy) / YEAR_DAYS)
        return base[None] + seas[:, :, None]

    def _ssh_truth_t(self, t: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(true elevation, its mesoscale part) as (T, nlat, nlon) metres, no land mask."""
        meso = _wave_sum(lat, lon, self._meso, self._meso_coef(t) * self._ssh_weight[None, :])
        return self._ssh_clim(lat, lon, t) + meso, meso

    def surf_el_truth(self, when: datetime, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Instantaneous true sea-surface elevation (m, nlat x nlon) at ``when`` (UTC); NaN on land.

        Its mesoscale part is the SST mesoscale's waves with the same phases: warm eddies stand high.
        """
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        eta, _ = self._ssh_truth_t(np.array([_t_days(when)]), lat, lon)
        return np.where(self.land(lat, lon), np.nan, eta[0])

    def _ssh_error(self, run: datetime, tau_hours: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Unpredictable surf_el forecast error (T, nlat, nlon) m: AR(1)-in-lead fields, own seeds ("ssh-err")."""
        c = self.config
        x = np.asarray(tau_hours, dtype=np.float64) / 24.0
        if np.any(x < 0):
            raise ValueError("tau_hours must be >= 0")
        n_anchor = int(np.floor(x.max())) + 2
        day = _as_naive_utc(run).date().toordinal()
        anchors = np.empty((n_anchor, len(lat), len(lon)))
        prev = None
        for n in range(n_anchor):
            w = _make_waves(self._rng("ssh-err", day, n), c.n_ssh_err_waves, c.ssh_err_lmin_km, c.ssh_err_lmax_km, 1.0)
            fresh = _wave_sum(lat, lon, w, (w.amp * np.exp(1j * w.phase))[None, :])[0]
            prev = fresh if prev is None else c.ssh_err_rho * prev + math.sqrt(1 - c.ssh_err_rho**2) * fresh
            anchors[n] = prev
        n = np.floor(x).astype(int)
        f = x - n
        weights = np.zeros((len(x), n_anchor))
        weights[np.arange(len(x)), n] = 1 - f
        weights[np.arange(len(x)), n + 1] += f
        amp = c.ssh_err_amp0_m + c.ssh_err_amp_per_day_m * x
        return np.tensordot(weights * amp[:, None], anchors, axes=(1, 0))

    def hycom_surf_el(self, run: datetime, tau_hours: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """HYCOM-like ``surf_el`` forecast of run ``run`` at valid times run+tau: metres (ntau, nlat, nlon), NaN on land.

        truth + offset growing with lead + slightly over-amplified mesoscale + AR(1)-in-lead random error.
        """
        c = self.config
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        run = _as_naive_utc(run)
        tau = np.atleast_1d(np.asarray(tau_hours, dtype=np.float64))
        lead = tau / 24.0
        eta, meso = self._ssh_truth_t(_t_days(run) + lead, lat, lon)
        offset = c.ssh_bias_m + c.ssh_bias_per_day_m * lead
        gain = c.ssh_state_gain0 + c.ssh_state_gain_per_day * lead
        out = eta + offset[:, None, None] + gain[:, None, None] * meso + self._ssh_error(run, tau, lat, lon)
        return np.where(self.land(lat, lon)[None], np.nan, out)

    def hycom_daily_surf_el(self, run: datetime, lead_day: int, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Daily-mean HYCOM ``surf_el`` (m, nlat x nlon) of valid day run.date()+lead_day: the mean of the
        8 three-hourly values 00Z..21Z (taus :meth:`daily_taus`), as for SST; NaN on land."""
        if lead_day < 1:
            raise ValueError("lead_day must be >= 1 (the run starts at 12Z of day 0)")
        return self.hycom_surf_el(run, self.daily_taus(lead_day), lat, lon).mean(axis=0)

    @staticmethod
    def daily_taus(lead_day: int) -> np.ndarray:
        """The 8 taus (h) whose valid times are 00Z..21Z of run.date()+lead_day."""
        return 24.0 * lead_day - 12.0 + 3.0 * np.arange(8)

    def hycom_daily_error(self, run: datetime, lead_day: int, lat: np.ndarray,
                          lon: np.ndarray) -> dict[str, np.ndarray]:
        """(daily-mean HYCOM - final OISST) of valid day run.date()+lead_day, split in predictable + unpredictable.

        Also returns 'total', 'hycom' (daily mean) and 'oisst' (sst); NaN on land.
        """
        if lead_day < 1:
            raise ValueError("lead_day must be >= 1 (the run starts at 12Z of day 0)")
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        run = _as_naive_utc(run)
        taus = self.daily_taus(lead_day)
        hy = self.hycom(run, taus, lat, lon)[:, 0].mean(axis=0)
        day = run.date() + timedelta(days=lead_day)
        ois = self.oisst(day, lat, lon)["sst"]
        total = hy - ois
        unpred = self._unpredictable(run, lead_day, lat, lon)
        return {"predictable": total - unpred, "unpredictable": unpred, "total": total, "hycom": hy, "oisst": ois}

    def _unpredictable(self, run: datetime, lead_day: int, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        run = _as_naive_utc(run)
        day = run.date() + timedelta(days=lead_day)
        err = self._random_error(run, self.daily_taus(lead_day), lat, lon).mean(axis=0)
        u = err - self._analysis_noise(day, lat, lon)
        return np.where(self.land(lat, lon), np.nan, u)

    def oracle_floor(self, run: datetime, lead_days: Sequence[int], lat: np.ndarray, lon: np.ndarray,
                     mask: np.ndarray | None = None) -> float:
        """RMSE (degC) over ocean (and ``mask`` True cells) of the unpredictable part, pooled over leads."""
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        sq, n = 0.0, 0
        for k in lead_days:
            u = self._unpredictable(run, int(k), lat, lon)
            ok = np.isfinite(u)
            if mask is not None:
                ok &= np.asarray(mask, dtype=bool)
            sq += float(np.sum(u[ok] ** 2))
            n += int(ok.sum())
        if n == 0:
            raise ValueError("no ocean cell to evaluate")
        return math.sqrt(sq / n)
