"""The log buffer holds at most what one MLflow log_batch request accepts."""

from mlflow.utils import validation

from dagma.tracking import batching
from dagma.tracking.batching import LogBuffer


def test_batch_limits_are_mlflows() -> None:
    assert batching.MAX_ENTITIES_PER_BATCH == validation.MAX_ENTITIES_PER_BATCH
    assert batching.MAX_PARAMS_TAGS_PER_BATCH == validation.MAX_PARAMS_TAGS_PER_BATCH
    assert batching.MAX_BATCH_CHARACTERS < validation.MAX_BATCH_LOG_REQUEST_SIZE


def test_buffer_is_full_at_a_thousand_entities_or_a_hundred_params_or_tags() -> None:
    buffer = LogBuffer()
    buffer.add_metrics({f"m{i}": float(i) for i in range(999)}, step=0)
    assert not buffer.full
    buffer.add_metrics({"last": 1.0}, step=1)
    assert buffer.full
    params = LogBuffer()
    params.add_params({f"p{i}": "x" for i in range(100)})
    assert params.full
    tags = LogBuffer()
    tags.add_tags({f"t{i}": "x" for i in range(99)})
    assert not tags.full
    tags.add_tags({"t0": "replaced"})  # a tag set again is one entity, the latest value
    assert (len(tags.tags), tags.tags["t0"], tags.full) == (99, "replaced", False)


def test_long_values_fill_the_buffer_before_the_request_size_limit() -> None:
    buffer = LogBuffer()
    buffer.add_params({f"p{i}": "v" * 6000 for i in range(90)})
    assert buffer.full  # 540,000 characters in 90 params: sent long before 1 MB


def test_take_hands_over_everything_in_logging_order_and_empties() -> None:
    buffer = LogBuffer()
    buffer.add_metrics({"loss": 0.5}, step=1)
    buffer.add_metrics({"loss": 0.25}, step=2)
    buffer.add_params({"lr": "0.1"})
    taken = buffer.take()
    assert [(key, value, step) for key, value, _, step in taken.metrics] == [
        ("loss", 0.5, 1),
        ("loss", 0.25, 2),
    ]
    assert taken.params == {"lr": "0.1"}
    assert buffer.empty and not taken.empty
