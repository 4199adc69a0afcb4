"""agentseat.sandbox.graph.directory"""
