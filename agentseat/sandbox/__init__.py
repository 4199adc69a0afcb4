"""agentseat.sandbox"""
