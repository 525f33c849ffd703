"""Connectors: small adapters that keep downstream systems' members equal to what is in force.

``base`` holds the contract (``Connector``, ``Member``, ``ConnectorError``); one module per
downstream system implements it. Provisioning and reconciliation (``pimlico.jobs``) call them.
"""
