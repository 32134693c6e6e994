"""The hard twin: the classic :class:`~bias_correction.testing.twin.Twin` plus the error mechanisms of the
real HYCOM - OISST difference that the classic one lacks (issue 11), and as-issued OISST versions.

Why: on the classic twin a correction gets close to its oracle floor too easily; the real error
persists from run to run, misplaces eddies, changes with the model version, misses typhoon wakes and
has heavy tails. Every mechanism is a :class:`HardTwinConfig` field; the classic fields stay as they are.

Mechanisms (added to the HYCOM surface field, so the stand-in files contain them):

* **persistent error**: a smooth field P(valid day), AR(1) over days (``persist_rho``), amplitude
  growing with lead: consecutive runs share most of it, at the same lead and at the same valid day.
* **misplaced eddies**: HYCOM's mesoscale is the truth's waves displaced by a per-run vector
  (``displace_km0 + displace_km_per_day * lead`` km) with a per-wave phase error growing with lead.
* **regime change** at ``regime_switch`` (GOFS 3.1 -> ESPC-D-V02, 2024-09-05, by run date): mean bias
  shifted by ``regime_bias_shift``, another seasonal bias and a weaker state-dependent gain.
* **cold wakes**: a few typhoon-like events a year (June-November) cool the truth by 1-2.5 °C along a
  track band, decaying over ~10 days; HYCOM takes the wake in only ``wake_miss_days`` after its onset.
* **heavy tails and seasonality**: the random (AR-in-lead) error is scaled per run by a lognormal
  factor and seasonally (larger in summer), on top of the classic seasonal bias.

OISST versions (``oisst(day, preliminary=...)``), after the real production (data_formats.md 1.3):
A(d) = OI-smoothed daily truth (wakes included, smoothed); n(d) = the classic final analysis noise.
preliminary(d) = A(d) + n(d) + e(d) (1 day of AVHRR: an extra noise e, the classic preliminary one);
final(d) = sum_j w_j (A(d+j) + n(d+j)), j = -1, 0, 1, w = ``final_blend`` (3 days of AVHRR, the
preliminary as first guess): smoother, less noisy, and sharing information with days d-1 and d+1.

``hycom_daily_error(...)["unpredictable"]``: the random parts no input known at run time determines:
the scaled AR-in-lead error, the eddy displacement error, the persistent error's innovations from the
run day on, the wakes that start after the analysis day (day of run - 1), minus the final's noise.
A model that sees the latest analysis and T runs can still estimate part of the displacement error.

Measured with ``twin_presets.error_statistics`` (2021 runs of the 3rd/4th and 17th/18th of each month,
leads 1-7, every 5th cell of the 0.08° grid of 12-16N 110-114E; HYCOM daily mean vs final OISST):

==========================================================  =========  =========
statistic                                                    classic    hard
==========================================================  =========  =========
raw RMSE (°C; the paper's real figure is 0.52)               0.503      0.540
monthly RMSE max/min                                         1.57       1.68
lag-1 correlation of the error anomaly, runs r/r+1, same lead 0.77      0.67
  same valid day (lead k vs k-1)                             0.81       0.69
kurtosis of the error anomaly (3 = normal)                   3.24       3.73
RMSE of the unpredictable part                               0.19       0.30
mean bias, 2024 runs before / after 2024-09-05               --         +0.20 / -0.14
OISST vs daily truth (12 days, 10th of each month):
  preliminary / final RMSE (mostly the OI smoothing)         0.23/0.22  0.27/0.21
==========================================================  =========  =========

The classic lag-1 correlation is high too: its state-dependent bias follows the slowly moving eddies.
The hard preset's region (15-19N, 108-112E) has 11.6 % land: the Vietnam coast and southern Hainan
(the Paracels are below the 0.08° grid). 2021 has 3 wakes, 2024 has 5.
"""

from __future__ import annotations

import math
import threading
from dataclasses import dataclass
from datetime import date, datetime, timedelta

import numpy as np

from bias_correction.testing.twin import (
    KM_PER_DEG, YEAR_DAYS, Twin, TwinConfig, _as_naive_utc, _make_waves, _t_days, _to_pm180, _wave_sum,
)

_T_EPOCH_ORD = date(2000, 1, 1).toordinal()


@dataclass(frozen=True)
class HardTwinConfig(TwinConfig):
    """The classic knobs plus the hard mechanisms (module docstring)."""

    # as-issued OISST: the final blends days d-1, d, d+1
    final_blend: tuple[float, float, float] = (0.25, 0.5, 0.25)
    prelim_noise_factor: float = 2.0  # the preliminary's extra noise e(d), times oisst_noise_std
    # persistent error, AR(1) over valid days
    persist_rho: float = 0.85
    persist_amp0: float = 0.06
    persist_amp_per_day: float = 0.015
    persist_memory_days: int = 40
    n_persist_waves: int = 24
    persist_lmin_km: float = 200.0
    persist_lmax_km: float = 900.0
    # misplaced eddies
    displace_km0: float = 5.0
    displace_km_per_day: float = 2.0
    phase_err0: float = 0.05
    phase_err_per_day: float = 0.03
    # regime change (run date)
    regime_switch: date = date(2024, 9, 5)
    regime_bias_shift: float = -0.30
    regime_season_amp: float = 0.30
    regime_season_peak_doy: float = 60.0
    regime_gain_factor: float = 0.5
    # random error: per-run lognormal scale (heavy tails), seasonal amplitude
    err_scale_sigma: float = 0.7
    err_season_amp: float = 0.35
    # cold wakes
    wakes_per_year: tuple[int, int] = (3, 6)
    wake_box: tuple[float, float, float, float] = (11.0, 20.0, 107.0, 117.0)  # lat0, lat1, lon0, lon1
    wake_doy: tuple[float, float] = (150.0, 320.0)
    wake_amp: tuple[float, float] = (1.0, 2.5)
    wake_width_km: float = 60.0
    wake_offset_km: float = 30.0  # cooling right of the track (northern hemisphere)
    wake_length_km: float = 450.0
    wake_rise_days: float = 1.0
    wake_decay_days: float = 10.0
    wake_miss_days: float = 4.0
    oisst_wake_smooth_km: float = 45.0  # the OI smoothing, as a Gaussian sigma


@dataclass(frozen=True)
class _Wake:
    onset: float  # days since 2000-01-01
    lat: float
    lon: float
    heading: float  # radians, counter-clockwise from east
    amp: float


class HardTwin(Twin):
    """The classic twin with the hard error mechanisms and as-issued OISST versions; same methods."""

    config: HardTwinConfig

    def __init__(self, config: HardTwinConfig = HardTwinConfig()) -> None:
        super().__init__(config)
        c = config
        self._pwaves = _make_waves(self._rng("persist-waves"), c.n_persist_waves, c.persist_lmin_km,
                                   c.persist_lmax_km, 1.0)
        self._z_cache: dict[int, np.ndarray] = {}
        self._wake_cache: dict[int, tuple[_Wake, ...]] = {}
        self._hard_lock = threading.Lock()

    # ------------------------------------------------------------------ regime and run-level draws
    def after_switch(self, run: datetime) -> bool:
        """True for runs of the ESPC-D-V02 era (run date on or after ``regime_switch``)."""
        return _as_naive_utc(run).date() >= self.config.regime_switch

    def _run_scale(self, run: datetime, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """Lognormal scale field (nlat, nlon), E[s^2] = 1, of the run's random error: a run-wide factor times a
        smooth spatial one, so a few runs and places are much worse than the rest (heavy tails)."""
        s = self.config.err_scale_sigma
        rng = self._rng("err-scale", _as_naive_utc(run).date().toordinal())
        z = rng.standard_normal()
        w = _make_waves(rng, 12, 300.0, 1200.0, 1.0)
        g = _wave_sum(lat, lon, w, (w.amp * np.exp(1j * w.phase))[None, :])[0]
        return np.exp(s * (0.6 * z + 0.8 * g) - s * s)

    def _displacement(self, run: datetime, lead: np.ndarray) -> np.ndarray:
        """exp(-i(m dlon + l dlat) + i phase error) per (lead, wave): the run's misplaced eddies."""
        c = self.config
        rng = self._rng("displace", _as_naive_utc(run).date().toordinal())
        angle = rng.uniform(0, 2 * math.pi)
        zphase = rng.standard_normal(len(self._meso.m))
        dist = (c.displace_km0 + c.displace_km_per_day * lead) / KM_PER_DEG  # degrees (equatorial km)
        dlon = np.deg2rad(dist * math.cos(angle))[:, None]
        dlat = np.deg2rad(dist * math.sin(angle))[:, None]
        perr = (c.phase_err0 + c.phase_err_per_day * lead)[:, None] * zphase[None, :]
        return np.exp(1j * (perr - self._meso.m[None, :] * dlon - self._meso.l[None, :] * dlat))

    def _gain(self, run: datetime, lead: np.ndarray) -> np.ndarray:
        c = self.config
        gain = c.bias_state_gain0 + c.bias_state_gain_per_day * lead
        return gain * c.regime_gain_factor if self.after_switch(run) else gain

    def _offset(self, run: datetime, t: np.ndarray, lead: np.ndarray) -> np.ndarray:
        c = self.config
        doy = np.mod(t, YEAR_DAYS)
        if self.after_switch(run):
            season = c.regime_season_amp * np.cos(2 * math.pi * (doy - c.regime_season_peak_doy) / YEAR_DAYS)
            return c.bias_mean0 + c.regime_bias_shift + c.bias_mean_per_day * lead + season
        return c.bias_mean0 + c.bias_mean_per_day * lead + c.bias_season_amp * np.cos(2 * math.pi * doy / YEAR_DAYS)

    def _err_season(self, t: np.ndarray) -> np.ndarray:
        c = self.config
        return 1.0 + c.err_season_amp * np.cos(2 * math.pi * (np.mod(t, YEAR_DAYS) - c.seasonal_peak_doy) / YEAR_DAYS)

    # ------------------------------------------------------------------ persistent error
    def _z(self, n: int) -> np.ndarray:
        """Complex unit innovations of day index n (days since 2000-01-01), one per persistent wave."""
        hit = self._z_cache.get(n)
        if hit is None:
            rng = self._rng("persist", n)
            w = self.config.n_persist_waves
            hit = (rng.standard_normal(w) + 1j * rng.standard_normal(w)) / math.sqrt(2.0)
            with self._hard_lock:
                self._z_cache[n] = hit
        return hit

    def _persist_coef(self, n: int, first_new: int | None = None) -> np.ndarray:
        """AR(1) wave coefficients of day n; with ``first_new`` only the innovations of days >= it."""
        c = self.config
        rho = c.persist_rho
        lo = n - c.persist_memory_days + 1 if first_new is None else max(first_new, n - c.persist_memory_days + 1)
        out = np.zeros(c.n_persist_waves, dtype=complex)
        for m in range(lo, n + 1):
            out += rho ** (n - m) * self._z(m)
        return math.sqrt(1 - rho**2) * out

    def _persistent(self, t: np.ndarray, lead: np.ndarray, lat: np.ndarray, lon: np.ndarray,
                    first_new: int | None = None) -> np.ndarray:
        """Persistent error (T, nlat, nlon) at times t, interpolated between days, amplitude by lead."""
        c = self.config
        n = np.floor(t).astype(int)
        f = (t - n)[:, None]
        coefs = {d: self._persist_coef(d, first_new) for d in np.unique(np.concatenate([n, n + 1])).tolist()}
        coef = np.stack([coefs[a] for a in n]) * (1 - f) + np.stack([coefs[a + 1] for a in n]) * f
        amp = (c.persist_amp0 + c.persist_amp_per_day * lead)[:, None]
        w = self._pwaves
        return _wave_sum(lat, lon, w, coef * w.amp[None, :] * amp)

    # ------------------------------------------------------------------ cold wakes
    def _wakes_of_year(self, year: int) -> tuple[_Wake, ...]:
        hit = self._wake_cache.get(year)
        if hit is None:
            c = self.config
            rng = self._rng("wakes", year)
            n = int(rng.integers(c.wakes_per_year[0], c.wakes_per_year[1] + 1))
            start = _t_days(date(year, 1, 1))
            hit = tuple(_Wake(onset=start + float(rng.uniform(*c.wake_doy)), lat=float(rng.uniform(*c.wake_box[:2])),
                              lon=float(rng.uniform(*c.wake_box[2:])),
                              heading=math.pi + float(rng.uniform(-0.3, 0.9)),  # westward to north-westward
                              amp=float(rng.uniform(*c.wake_amp))) for _ in range(n))
            with self._hard_lock:
                self._wake_cache[year] = hit
        return hit

    def wakes(self, t0: float, t1: float) -> list[_Wake]:
        """Wake events whose effect overlaps times t0..t1 (days since 2000-01-01)."""
        c = self.config
        y0 = (datetime(2000, 1, 1) + timedelta(days=t0)).year
        y1 = (datetime(2000, 1, 1) + timedelta(days=t1)).year
        span = 8 * c.wake_decay_days
        return [w for y in range(y0 - 1, y1 + 1) for w in self._wakes_of_year(y)
                if w.onset <= t1 and w.onset + span >= t0]

    def _wake_time(self, w: _Wake, t: np.ndarray) -> np.ndarray:
        c = self.config
        age = t - w.onset
        rise = np.clip(age / c.wake_rise_days, 0.0, 1.0)
        return np.where(age > 0, w.amp * rise * np.exp(-np.maximum(age, 0.0) / c.wake_decay_days), 0.0)

    def wake_shape(self, w: _Wake, lat: np.ndarray, lon: np.ndarray, smooth_km: float = 0.0) -> np.ndarray:
        """Unit cooling pattern (nlat, nlon) of one wake: a band right of the track, tapered along it."""
        c = self.config
        y = (np.asarray(lat) - w.lat)[:, None] * KM_PER_DEG
        x = (np.mod(np.asarray(lon) - w.lon + 180.0, 360.0) - 180.0)[None, :] * KM_PER_DEG * math.cos(math.radians(w.lat))
        along = x * math.cos(w.heading) + y * math.sin(w.heading)
        across = -x * math.sin(w.heading) + y * math.cos(w.heading)  # > 0 left of the track
        width = math.hypot(c.wake_width_km, smooth_km)
        return (c.wake_width_km / width) * np.exp(-0.5 * ((across + c.wake_offset_km) / width) ** 2
                                                  - (along / c.wake_length_km) ** 2)

    def _wake_field(self, t: np.ndarray, lat: np.ndarray, lon: np.ndarray, *, smooth_km: float = 0.0,
                    weight=None) -> np.ndarray:
        """Cooling (T, nlat, nlon) degC (>= 0) at times t; ``weight(w)`` scales each event's time factor."""
        out = np.zeros((len(t), len(lat), len(lon)))
        for w in self.wakes(float(np.min(t)), float(np.max(t))):
            a = self._wake_time(w, t) * (1.0 if weight is None else weight(w))
            if np.any(a != 0):
                out += a[:, None, None] * self.wake_shape(w, lat, lon, smooth_km)[None]
        return out

    def _wake_ramp(self, run: datetime, w: _Wake) -> float:
        """How much of a wake HYCOM's run has taken in: 0 at onset, 1 after ``wake_miss_days``."""
        return float(np.clip((_t_days(_as_naive_utc(run)) - w.onset) / self.config.wake_miss_days, 0.0, 1.0))

    # ------------------------------------------------------------------ truth and analyses
    def _truth_t(self, t: np.ndarray, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        truth, meso = super()._truth_t(t, lat, lon)
        return np.maximum(truth - self._wake_field(np.atleast_1d(t), lat, lon), self.config.freeze_c), meso

    def _analysis_core(self, day: date, lat: np.ndarray, lon: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(climatology (nlat,), A(day) + n(day) (nlat, nlon)): the OI-smoothed day plus the final noise."""
        c = self.config
        t = _t_days(day) + np.arange(8) / 8.0
        clim = self._clim(lat, t).mean(axis=0)
        coef = (self._meso_coef(t).mean(axis=0) * self._damp)[None, :]
        smooth = _wave_sum(lat, lon, self._meso, coef)[0]
        wake = self._wake_field(t, lat, lon, smooth_km=c.oisst_wake_smooth_km).mean(axis=0)
        return clim, clim[:, None] + smooth - wake + self._analysis_noise(day, lat, lon)

    def _final_noise(self, day: date, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        return sum(wj * self._analysis_noise(day + timedelta(days=j), lat, lon)
                   for j, wj in zip((-1, 0, 1), self.config.final_blend, strict=True))

    def oisst(self, day: date, lat: np.ndarray, lon: np.ndarray, preliminary: bool = False) -> dict[str, np.ndarray]:
        """As :meth:`Twin.oisst`; the final blends days d-1..d+1, the preliminary is day d with more noise."""
        c = self.config
        lat = np.asarray(lat, dtype=np.float64)
        lon = np.asarray(lon, dtype=np.float64)
        if isinstance(day, datetime):
            day = day.date()
        clim, core = self._analysis_core(day, lat, lon)
        if preliminary:
            field = core + self._analysis_noise(day, lat, lon, preliminary=True)
        else:
            field = sum(wj * (core if j == 0 else self._analysis_core(day + timedelta(days=j), lat, lon)[1])
                        for j, wj in zip((-1, 0, 1), c.final_blend, strict=True))
        sst = np.where(self.land(lat, lon), np.nan, np.maximum(field, c.freeze_c))
        return self._finish_analysis(day, lat, lon, sst, clim)

    def _finish_analysis(self, day: date, lat: np.ndarray, lon: np.ndarray, sst: np.ndarray,
                         clim: np.ndarray) -> dict[str, np.ndarray]:
        """anom, err and ice of an analysis, by the classic recipe (same seeds)."""
        c = self.config
        land = self.land(lat, lon)
        w = _make_waves(self._rng("err", day.toordinal()), 12, 300.0, 1500.0, 1.0)
        err = c.err_mean + c.err_std * _wave_sum(lat, lon, w, (w.amp * np.exp(1j * w.phase))[None, :])[0]
        err = np.where(land, np.nan, np.clip(err, 0.05, 0.5))
        ice = np.clip(15.0 + 85.0 * (c.ice_threshold_c - sst) / 0.25, 15.0, 100.0)
        ice = np.where(sst < c.ice_threshold_c, ice, np.nan)
        return {"sst": sst, "anom": sst - clim[:, None], "err": err, "ice": ice}

    # ------------------------------------------------------------------ HYCOM
    def _hycom_surface(self, run: datetime, tau_hours: np.ndarray, lat: np.ndarray, lon: np.ndarray,
                       with_error: bool = True) -> np.ndarray:
        """Surface HYCOM forecast (T, nlat, nlon), no land mask: the classic terms with the hard mechanisms."""
        c = self.config
        run = _as_naive_utc(run)
        tau = np.asarray(tau_hours, dtype=np.float64)
        t = _t_days(run) + tau / 24.0
        lead = tau / 24.0
        meso = _wave_sum(lat, lon, self._meso, self._meso_coef(t) * self._displacement(run, lead))
        utc_hour = np.mod(t, 1.0) * 24.0
        local = utc_hour[:, None] + _to_pm180(lon)[None, :] / 15.0
        diurnal = c.diurnal_amp * np.cos(2 * math.pi * (local - c.diurnal_peak_local_hour) / 24.0)
        gain = self._gain(run, lead)
        out = self._clim(lat, t)[:, :, None] + (1.0 + gain)[:, None, None] * meso + diurnal[:, None, :]
        out = out + self._offset(run, t, lead)[:, None, None] + self._coast_bias(lat, lon)[None]
        out = out - self._wake_field(t, lat, lon, weight=lambda w: self._wake_ramp(run, w))
        if with_error:
            scale = self._run_scale(run, lat, lon)[None] * self._err_season(t)[:, None, None]
            out = out + scale * self._random_error(run, tau, lat, lon) + self._persistent(t, lead, lat, lon)
        return np.maximum(out, c.freeze_c)

    def _unpredictable(self, run: datetime, lead_day: int, lat: np.ndarray, lon: np.ndarray) -> np.ndarray:
        """The random parts of the error no input known at run time determines (module docstring)."""
        run = _as_naive_utc(run)
        day = run.date() + timedelta(days=lead_day)
        tau = self.daily_taus(lead_day)
        t = _t_days(run) + tau / 24.0
        lead = tau / 24.0
        scale = self._run_scale(run, lat, lon)[None] * self._err_season(t)[:, None, None]
        u = scale * self._random_error(run, tau, lat, lon)
        coef = self._meso_coef(t)
        gain = (1.0 + self._gain(run, lead))[:, None, None]
        u = u + gain * (_wave_sum(lat, lon, self._meso, coef * self._displacement(run, lead))
                        - _wave_sum(lat, lon, self._meso, coef))
        first_new = run.date().toordinal() - _T_EPOCH_ORD  # innovations from the run day on
        u = u + self._persistent(t, lead, lat, lon, first_new=first_new)
        seen = _t_days(run.date())  # the analysis of day run - 1 shows wakes begun before this
        u = u + self._wake_field(t, lat, lon, weight=lambda w: 0.0 if w.onset < seen else 1.0 - self._wake_ramp(run, w))
        u = u.mean(axis=0) - self._final_noise(day, lat, lon)
        return np.where(self.land(lat, lon), np.nan, u)
