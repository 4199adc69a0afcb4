"""The sandbox's Azure Event Hubs emulator: AMQP 1.0 over TLS for the real `azure-eventhub` SDK."""
