"""The README's cluster path for real: a Spark standalone master and one worker (started from
the pyspark installation, Java 17) and `spark-submit --master spark://...` of a Vitrine job."""

from __future__ import annotations

import csv
import itertools
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytest.importorskip("pyspark", reason="Spark tests need the spark extra (make test installs it)")
from serve_process import free_port

pytestmark = pytest.mark.integration
SRC = Path(__file__).resolve().parents[2] / "src"
# Short-lived JVMs on a small machine: C1 only (about half the start-up CPU time).
FAST_JVM = "-XX:TieredStopAtLevel=1 -XX:+UseSerialGC -Xss8m"


@pytest.fixture()
def cluster(tmp_path: Path) -> Iterator[tuple[str, str, dict[str, str]]]:
    """(master URL, master web UI, environment) of a one-worker standalone cluster."""
    import pyspark

    home = Path(pyspark.__file__).parent
    env = {
        **os.environ,
        "SPARK_HOME": str(home),
        "SPARK_LOCAL_IP": "127.0.0.1",
        "SPARK_LOG_DIR": str(tmp_path / "logs"),
        "PYSPARK_PYTHON": sys.executable,
        "PYSPARK_DRIVER_PYTHON": sys.executable,
        "PYTHONPATH": os.pathsep.join(p for p in (str(SRC), os.environ.get("PYTHONPATH")) if p),
        "SPARK_DAEMON_JAVA_OPTS": FAST_JVM,
    }
    port, ui = free_port(), free_port()
    spark_class = str(home / "bin" / "spark-class")
    logs = [(tmp_path / name).open("w") for name in ("master.log", "worker.log")]
    daemons = [
        subprocess.Popen(
            [
                spark_class,
                "org.apache.spark.deploy.master.Master",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--webui-port",
                str(ui),
            ],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=logs[0],
            stderr=subprocess.STDOUT,
        )
    ]
    master, web = f"spark://127.0.0.1:{port}", f"http://127.0.0.1:{ui}/json/"
    try:
        daemons.append(
            subprocess.Popen(
                [
                    spark_class,
                    "org.apache.spark.deploy.worker.Worker",
                    "--host",
                    "127.0.0.1",
                    "--cores",
                    "2",
                    "--memory",
                    "1g",
                    "--webui-port",
                    str(free_port()),
                    "--work-dir",
                    str(tmp_path / "work"),
                    master,
                ],
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=logs[1],
                stderr=subprocess.STDOUT,
            )
        )
        deadline = time.monotonic() + 120  # a loaded 2-core machine starts Spark slowly
        while True:
            try:
                if httpx.get(web, timeout=2).json().get("aliveworkers") == 1:
                    break
            except (httpx.HTTPError, ValueError):  # not up yet, or its UI still a 404 page
                pass
            time.sleep(0.5)
            if time.monotonic() > deadline or any(d.poll() is not None for d in daemons):
                pytest.fail(
                    "standalone cluster did not start:\n"
                    + (tmp_path / "master.log").read_text()[-2000:]
                    + (tmp_path / "worker.log").read_text()[-2000:]
                )
            time.sleep(0.5)
        yield master, web, env
    finally:
        for daemon in reversed(daemons):
            daemon.terminate()
        for daemon in reversed(daemons):
            try:
                daemon.wait(timeout=20)
            except subprocess.TimeoutExpired:
                daemon.kill()
        for handle in logs:
            handle.close()


def test_spark_submit_train_als_to_a_standalone_cluster(
    cluster: tuple[str, str, dict[str, str]], data_dir: Path, tmp_path: Path
) -> None:
    master, web, env = cluster
    source = data_dir / "hm" / "transactions.csv"
    if not source.is_file():
        pytest.skip("H&M data not found")
    events = tmp_path / "purchases.csv"
    with source.open() as src, events.open("w") as dst:
        dst.writelines(itertools.islice(src, 1001))
    import vitrine.cli

    output = tmp_path / "als"
    home = tmp_path / "home"
    home.mkdir()
    result = subprocess.run(
        [
            str(Path(env["SPARK_HOME"]) / "bin" / "spark-submit"),
            "--master",
            master,
            "--conf",
            f"spark.pyspark.python={sys.executable}",
            "--conf",
            "spark.driver.host=127.0.0.1",
            "--driver-java-options",
            FAST_JVM,
            "--conf",
            f"spark.executor.extraJavaOptions={FAST_JVM}",
            "--conf",
            "spark.sql.shuffle.partitions=2",
            "--conf",
            f"spark.executorEnv.PYTHONPATH={env['PYTHONPATH']}",
            "--executor-memory",
            "512m",
            vitrine.cli.__file__,
            "spark",
            "train-als",
            "--output",
            str(output),
            "--events",
            str(events),
            "--user-column",
            "customer_id",
            "--item-column",
            "article_id",
            "--type-column",
            "",
            "--time-column",
            "t_dat",
            "--rank",
            "4",
            "--iterations",
            "3",
            "--blocks",
            "2",
        ],
        env={**env, "VITRINE_HOME": str(home)},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert result.returncode == 0, result.stderr[-4000:]
    summary = json.loads(result.stdout)
    with events.open(newline="") as handle:
        rows = list(csv.DictReader(handle))
    assert summary["users"] == len({r["customer_id"] for r in rows})
    assert summary["items"] == len({r["article_id"] for r in rows})
    from vitrine.recommend.als_factors import read_item_factors

    ids, factors = read_item_factors(output)
    assert sorted(ids) == sorted({r["article_id"] for r in rows}) and factors.shape[1] == 4
    # It ran on the cluster: the master lists the finished application and its executor.
    apps = httpx.get(web, timeout=5).json()["completedapps"]
    assert [a["name"] for a in apps] == ["vitrine-als"]
