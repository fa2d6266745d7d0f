"""capacity_from_ray: the dashboard's node list and usage report into per-node free GPUs."""
from daemon.serving.placement import AdmissionMode, NodeFree, capacity_from_ray


def nodes(*rows):
    return {"data": {"result": {"result": list(rows)}}}


def usage(by_node):
    # As the dashboard sends it: keys camelCased, so "accelerator_type:H20" arrives as "acceleratorType:H20".
    return {"data": {"clusterStatus": {"loadMetricsReport": {"usageByNode": by_node}}}}


def test_free_gpus_of_the_type_per_alive_node():
    rows = [
        {"node_id": "a", "state": "ALIVE", "resources_total": {"GPU": 4.0, "CPU": 8.0, "accelerator_type:H20": 1.0}},
        {"node_id": "b", "state": "ALIVE", "resources_total": {"GPU": 4.0, "CPU": 8.0, "accelerator_type:A100": 1.0}},
        {"node_id": "c", "state": "DEAD", "resources_total": {"GPU": 8.0, "CPU": 8.0, "accelerator_type:H20": 1.0}},
        {"node_id": "d", "state": "ALIVE", "resources_total": {"GPU": 2.0, "CPU": 4.0, "accelerator_type:H20": 1.0}},
    ]
    report = usage({"a": {"GPU": [3.0, 4.0], "CPU": [7.5, 8.0], "acceleratorType:H20": [0.0, 1.0]},
                    "b": {"GPU": [0.0, 4.0], "CPU": [0.0, 8.0]}})
    capacity = capacity_from_ray(nodes(*rows), report, "H20", AdmissionMode.FIT)
    assert capacity.nodes == (NodeFree("a", 1.0, 0.5, 4.0),   # live usage, not totals
                              NodeFree("b", 0.0, 8.0, 0.0),   # another type: its GPUs do not count
                              NodeFree("d", 2.0, 4.0, 2.0))   # no usage report yet: wholly free; c is dead
    assert capacity.mode == AdmissionMode.FIT and capacity.accelerator_type == "H20"


def test_nothing_reported_is_an_empty_cluster():
    assert capacity_from_ray(None, None, "H20", AdmissionMode.AUTOSCALE).nodes == ()
