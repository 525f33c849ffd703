"""One module per family of operations; each has a ``router`` and its request and response
models. Routes translate and call services; they hold no rules of their own."""
