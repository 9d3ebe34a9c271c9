"""Where messages go: one subpackage per destination, each behind the Notifier protocol (responder.notify.base)."""
