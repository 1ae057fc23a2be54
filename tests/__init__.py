"""Tests for chat; run with: python -m twisted.trial tests"""
