"""prefect.yaml deploys the same flows, under the names the front door starts runs of."""

import importlib
from pathlib import Path

import yaml

from chatops.settings import DEPLOYMENTS

ROOT = Path(__file__).parents[1]


def test_prefect_yaml_names_the_flows_the_front_door_starts() -> None:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    names = set()
    for deployment in spec["deployments"]:
        path, function = deployment["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        flow = getattr(module, function)
        names.add(f"{flow.name}/{deployment['name']}")
        assert deployment["work_pool"]["name"] == "chatops"
    assert names == set(DEPLOYMENTS)
