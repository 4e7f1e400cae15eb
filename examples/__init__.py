"""Real workers instrumented with metricskit, and the local demo (see examples/README.md).

* :mod:`examples.csv_to_kafka`: S3 CSV to Kafka, sharded, checkpointed;
* :mod:`examples.codec_training`: a codec training loop (numpy, or CuPy on a GPU) with quality
  and GPU gauges;
* :mod:`examples.demo`: ``make demo``, everything on a local moto endpoint;
* :mod:`examples.dashboard_render`: a CloudWatch dashboard body drawn as a PNG.
"""
