"""Status webhooks: subscriptions, the outbox of report events, signed delivery with retries."""
