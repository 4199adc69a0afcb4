"""agentseat.sandbox.notifications"""
