"""The party controller: watches the chain for requests and posts this party's fulfilments."""
