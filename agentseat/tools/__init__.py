"""agentseat.tools"""
