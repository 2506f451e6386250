"""Sends traces, logs and metrics to tael-raft with the OpenTelemetry Python
SDK's own OTLP exporters, over gRPC and over HTTP.

Each signal is first recorded in memory, then handed to the exporter
directly, so a failed export is a non-zero exit here rather than a silently
dropped batch. Prints what was sent as JSON for the Rust test to check,
including the spans as the exporters encode them (an OTLP
ExportTraceServiceRequest in hex), which the test compares with what the
cluster gives back as OTLP.

usage: send.py --grpc HOST:PORT --http http://HOST:PORT --run-id ID
               [--ca CA.pem] [--api-key KEY] [--refused]

With --ca both exporters speak TLS (gRPC to https://HOST:PORT, HTTP to the
https:// URL given) and trust only that CA; with --api-key they send
`authorization: Bearer KEY`. With --refused the script expects every export
to be refused for want of a key and prints what the exporters saw.
"""

import argparse
import json
import logging
import sys

import grpc
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc._log_exporter import (
    OTLPLogExporter as GrpcLogExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.metric_exporter import (
    OTLPMetricExporter as GrpcMetricExporter,
)
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression as HttpCompression
from opentelemetry.exporter.otlp.proto.http._log_exporter import (
    OTLPLogExporter as HttpLogExporter,
)
from opentelemetry.exporter.otlp.proto.http.metric_exporter import (
    OTLPMetricExporter as HttpMetricExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.metrics import Observation
from opentelemetry.sdk._logs import LoggerProvider, LoggingHandler
from opentelemetry.sdk._logs.export import (
    InMemoryLogRecordExporter,
    LogRecordExportResult,
    SimpleLogRecordProcessor,
)
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader, MetricExportResult
from opentelemetry.sdk.metrics.view import ExponentialBucketHistogramAggregation, View
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExportResult
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

SPANS_PER_RUN = 5
LOGS_PER_RUN = 4


def record(service):
    """Records spans, logs (inside a span) and metrics for `service` in memory."""
    resource = Resource.create(
        {
            "service.name": service,
            "sdk.test": "yes",
            "sdk.pid": 4242,
            "sdk.ratio": 0.25,
            "sdk.tags": ["a", "b"],
        },
        schema_url="https://opentelemetry.io/schemas/1.21.0",
    )

    spans = InMemorySpanExporter()
    tracer_provider = TracerProvider(resource=resource)
    tracer_provider.add_span_processor(SimpleSpanProcessor(spans))
    tracer = tracer_provider.get_tracer(
        "tael-sdk-test",
        "1.2.3",
        schema_url="https://opentelemetry.io/schemas/1.26.0",
        attributes={"scope.kind": "test", "scope.level": 2},
    )
    linked = trace.SpanContext(
        trace_id=0x0AF7651916CD43DD8448EB211C80319C,
        span_id=0x00F067AA0BA902B7,
        is_remote=True,
        trace_flags=trace.TraceFlags(trace.TraceFlags.SAMPLED),
        trace_state=trace.TraceState([("vendor", "v1")]),
    )

    logs = InMemoryLogRecordExporter()
    logger_provider = LoggerProvider(resource=resource)
    logger_provider.add_log_record_processor(SimpleLogRecordProcessor(logs))
    py_logger = logging.getLogger(f"tael.{service}")
    py_logger.propagate = False
    py_logger.setLevel(logging.DEBUG)
    py_logger.addHandler(LoggingHandler(level=logging.DEBUG, logger_provider=logger_provider))

    trace_ids = []
    with tracer.start_as_current_span("sdk-root") as root:
        root.set_attribute("run.service", service)
        root.set_attributes(
            {
                "run.int": -7,
                "run.double": 2.5,
                "run.bool": True,
                "run.strings": ["x", "y"],
                "run.ints": [1, 2, 3],
                "run.doubles": [0.5, -1.0],
                "run.bools": [True, False],
            }
        )
        root.add_event("checkpoint", {"step": 2, "ok": True, "ratio": 0.75})
        trace_ids.append(format(root.get_span_context().trace_id, "032x"))
        for i in range(SPANS_PER_RUN - 1):
            with tracer.start_as_current_span(
                f"sdk-child-{i}",
                kind=trace.SpanKind.CLIENT,
                links=[trace.Link(linked, {"link.i": i, "link.reason": "follows"})],
            ) as child:
                child.set_attribute("i", i)
                if i == 1:
                    child.set_status(trace.Status(trace.StatusCode.ERROR, "child 1 failed"))
        py_logger.error("sdk error log", extra={"order.id": "o-1"})
        py_logger.warning("sdk warning log")
        py_logger.info("sdk info log")
    py_logger.debug("sdk debug log outside any span")

    reader = InMemoryMetricReader()
    meter_provider = MeterProvider(
        resource=resource,
        metric_readers=[reader],
        views=[
            View(
                instrument_name="sdk.size",
                aggregation=ExponentialBucketHistogramAggregation(max_size=20),
            )
        ],
    )
    meter = meter_provider.get_meter("tael-sdk-test")
    counter = meter.create_counter("sdk.requests", unit="{request}")
    counter.add(3, {"route": "/a"})
    counter.add(4, {"route": "/b"})
    hist = meter.create_histogram("sdk.latency", unit="ms")
    for v in (1, 5, 50, 500):
        hist.record(v)
    size = meter.create_histogram("sdk.size", unit="By")
    for v in (1, 2, 4, 1000):
        size.record(v)
    meter.create_observable_gauge(
        "sdk.temperature", callbacks=[lambda _options: [Observation(21.5, {"room": "lab"})]]
    )
    updown = meter.create_up_down_counter("sdk.inflight")
    updown.add(5)
    updown.add(-2)
    metrics = reader.get_metrics_data()

    tracer_provider.shutdown()
    logger_provider.shutdown()
    return spans.get_finished_spans(), logs.get_finished_logs(), metrics, trace_ids[0]


def check(what, result, success):
    if result != success:
        print(f"export of {what} failed: {result}", file=sys.stderr)
        sys.exit(1)


def exporters(transport, args):
    """The span, log and metric exporters of one transport, configured as the
    command line says (TLS, key)."""
    headers = {"authorization": f"Bearer {args.api_key}"} if args.api_key else None
    if transport == "grpc":
        if args.ca:
            with open(args.ca, "rb") as f:
                tls = {"insecure": False, "credentials": grpc.ssl_channel_credentials(f.read())}
            endpoint = f"https://{args.grpc}"
        else:
            tls = {"insecure": True}
            endpoint = f"http://{args.grpc}"
        common = {"endpoint": endpoint, "timeout": 20, "headers": headers, **tls}
        return (
            GrpcSpanExporter(**common),
            GrpcLogExporter(**common),
            GrpcMetricExporter(**common, compression=grpc.Compression.Gzip),
        )
    base = args.http.rstrip("/")
    gzip = HttpCompression.Gzip
    common = {"timeout": 20, "headers": headers, "certificate_file": args.ca}
    return (
        HttpSpanExporter(endpoint=f"{base}/v1/traces", compression=gzip, **common),
        HttpLogExporter(endpoint=f"{base}/v1/logs", **common),
        HttpMetricExporter(endpoint=f"{base}/v1/metrics", compression=gzip, **common),
    )


class Captured(logging.Handler):
    """Keeps the exporters' own log messages (the gRPC exporter logs the
    status code of a refused export)."""

    def __init__(self):
        super().__init__(level=logging.DEBUG)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def refused(args):
    """Every export without a key fails, and says why: HTTP 401 and gRPC
    UNAUTHENTICATED."""
    captured = Captured()
    logging.getLogger("opentelemetry.exporter.otlp").addHandler(captured)
    seen = {}
    for transport in ("grpc", "http"):
        spans, logs, _metrics, _trace_id = record(f"sdk-refused-{transport}-{args.run_id}")
        span_exp, log_exp, metric_exp = exporters(transport, args)
        seen[transport] = {
            "spans": str(span_exp.export(spans)),
            "logs": str(log_exp.export(logs)),
        }
        if transport == "http":
            # The status the HTTP exporter's own client received (the
            # exporter returns FAILURE without logging it).
            body = encode_spans(spans).SerializeToString()
            seen["http"]["status"] = span_exp._client.export(body).status_code
        span_exp.shutdown()
        log_exp.shutdown()
        metric_exp.shutdown()
    seen["log_messages"] = captured.messages
    print(json.dumps(seen))


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--grpc", required=True, help="OTLP/gRPC host:port")
    parser.add_argument("--http", required=True, help="OTLP/HTTP base URL")
    parser.add_argument("--run-id", required=True)
    parser.add_argument("--ca", help="CA certificate (PEM): export over TLS")
    parser.add_argument("--api-key", help="sent as authorization: Bearer KEY")
    parser.add_argument("--refused", action="store_true", help="expect every export refused")
    args = parser.parse_args()
    if args.refused:
        refused(args)
        return

    sent = {}
    for transport in ("grpc", "http"):
        service = f"sdk-{transport}-{args.run_id}"
        spans, logs, metrics, trace_id = record(service)
        span_exp, log_exp, metric_exp = exporters(transport, args)
        check(f"{transport} spans", span_exp.export(spans), SpanExportResult.SUCCESS)
        check(f"{transport} logs", log_exp.export(logs), LogRecordExportResult.SUCCESS)
        check(f"{transport} metrics", metric_exp.export(metrics), MetricExportResult.SUCCESS)
        span_exp.shutdown()
        log_exp.shutdown()
        metric_exp.shutdown()
        sent[transport] = {
            "service": service,
            "spans": len(spans),
            "logs": len(logs),
            "trace_id": trace_id,
            "otlp_traces_hex": encode_spans(spans).SerializeToString().hex(),
        }
    print(json.dumps(sent))


if __name__ == "__main__":
    main()
