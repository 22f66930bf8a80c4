import subprocess
import sys
from pathlib import Path

from merr_builder.atomic import atomic_path, remove_stale_temps, temp_path_for


def test_a_live_writers_temp_survives_a_cleanup_and_a_dead_ones_does_not(tmp_path: Path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    dead_temp = tmp_path / f".part.parquet.tmp-{int(dead.stdout)}-deadbeef"
    dead_temp.write_bytes(b"left by a killed writer")
    with atomic_path(tmp_path / "part.parquet") as temp:  # this process, another thread's view alike
        temp.write_bytes(b"being written")
        assert remove_stale_temps(tmp_path) == 1
        assert temp.exists() and not dead_temp.exists()
    assert (tmp_path / "part.parquet").read_bytes() == b"being written"
    assert temp_path_for(tmp_path / "x").name.startswith(".x.tmp-")
