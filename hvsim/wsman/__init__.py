"""The WinRM side of hvsim: HTTP(S) listeners, authentication, SOAP envelopes and PSRP shells."""
