"""Prometheus text written by hand."""

from conveyor.serving.metrics import Metrics


def test_render_counts_requests_batches_loads_and_queue_depth():
    metrics = Metrics(lambda: {"m": 3})
    metrics.request("m", "1", "v2", 200, 0.003)
    metrics.request("m", "1", "v2", 200, 0.2)
    metrics.batch("m", 5)
    metrics.model_loaded("m", 0.5)
    text = metrics.render()
    lines = text.splitlines()
    assert 'conveyor_requests_total{model="m",version="1",protocol="v2",status="200"} 2' in lines
    assert 'conveyor_request_seconds_bucket{model="m",protocol="v2",le="0.005"} 1' in lines
    assert 'conveyor_request_seconds_bucket{model="m",protocol="v2",le="+Inf"} 2' in lines
    assert 'conveyor_batch_size_bucket{model="m",le="4"} 0' in lines
    assert 'conveyor_batch_size_bucket{model="m",le="8"} 1' in lines
    assert 'conveyor_batch_size_count{model="m"} 1' in lines
    assert 'conveyor_model_load_seconds_count{model="m"} 1' in lines
    assert 'conveyor_queue_depth{model="m"} 3' in lines
    assert "# TYPE conveyor_request_seconds histogram" in lines


def test_label_values_are_escaped():
    metrics = Metrics(dict)
    metrics.request('a"b', "1", "v1", 404, 0.0)
    assert 'model="a\\"b"' in metrics.render()


def test_a_value_on_a_bucket_bound_counts_in_that_bucket():
    metrics = Metrics(dict)
    for rows in (1, 2, 2, 3, 2000):
        metrics.batch("m", rows)
    lines = metrics.render().splitlines()
    assert 'conveyor_batch_size_bucket{model="m",le="1"} 1' in lines
    assert 'conveyor_batch_size_bucket{model="m",le="2"} 3' in lines
    assert 'conveyor_batch_size_bucket{model="m",le="4"} 4' in lines
    assert 'conveyor_batch_size_bucket{model="m",le="1024"} 4' in lines
    assert 'conveyor_batch_size_bucket{model="m",le="+Inf"} 5' in lines
    assert 'conveyor_batch_size_sum{model="m"} 2008' in lines
