"""An example application protected by Pimlico (see ``app``)."""
