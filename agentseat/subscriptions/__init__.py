"""agentseat.subscriptions"""
