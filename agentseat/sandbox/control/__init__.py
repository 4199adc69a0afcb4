"""agentseat.sandbox.control"""
