"""The durable scheduler: the outbox (``outbox``), the worker that runs it (``worker``) and
the job kinds Pimlico knows (``handlers``)."""
