"""strom: a small, dependency-free Python client for the Strom broker's JSON protocol.

>>> from strom import SimpleProducer, SimpleConsumer
>>> producer = SimpleProducer()            # 127.0.0.1:9092, or host/port, or STROM_JSON_ADDR
>>> producer.connect()
>>> producer.create_topic("demo-topic", partitions=3)
>>> response = producer.send("demo-topic", "Hello, Kafka!", partition=0)
>>> consumer = SimpleConsumer()
>>> consumer.connect()
>>> consumer.subscribe("demo-topic", partition=0)
>>> for msg in consumer.poll():
...     print(msg["value"], msg["offset"])

Consumer groups: ``SimpleConsumer(group_id="g")`` and ``subscribe("demo-topic")``.
Errors are :class:`StromError` with the broker's ``code`` and ``message``.
"""

from .consumer import SimpleConsumer
from .errors import StromConnectionError, StromError
from .producer import SimpleProducer

__all__ = ["SimpleProducer", "SimpleConsumer", "StromError", "StromConnectionError"]
__version__ = "0.1.0"
